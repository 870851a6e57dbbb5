//! A 16-bit grey image through the encoder and back through the decoder, in memory. Before the
//! patch in PATCHES.md the decoder freed every code block's `decoded_data` with
//! `std::alloc::dealloc` even where it was never allocated (null, on the whole-tile path), which
//! is undefined behaviour. glibc's `free` forgives it; wasm's allocator and allocators that check
//! their arguments do not. The tests run under such an allocator: it counts every `dealloc` of a
//! null pointer, and each test fails if there was one.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

use openjp2::openjpeg::*;

/// The system allocator, but a `dealloc` of a null pointer (which no Rust allocator must be
/// given) is counted instead of passed on.
struct Strict;

static NULL_FREES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Strict {
  unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
    System.alloc(layout)
  }
  unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
    System.alloc_zeroed(layout)
  }
  unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
    if ptr.is_null() {
      NULL_FREES.fetch_add(1, Ordering::SeqCst);
    } else {
      System.dealloc(ptr, layout)
    }
  }
  unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    System.realloc(ptr, layout, new_size)
  }
}

#[global_allocator]
static ALLOCATOR: Strict = Strict;

fn assert_no_null_frees() {
  let n = NULL_FREES.load(Ordering::SeqCst);
  assert_eq!(n, 0, "{n} dealloc(s) of a null pointer");
}

const W: u32 = 97;
const H: u32 = 70;

/// A ramp with a sharp edge and noise, so that every code block holds data.
fn picture() -> Vec<i32> {
  let mut state = 12345u32;
  (0..W * H)
    .map(|i| {
      let (x, y) = (i % W, i / W);
      state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
      let noise = (state >> 16) % 64;
      let edge = if x > W / 2 { 20_000 } else { 0 };
      (x * 300 + y * 40 + edge + noise) as i32
    })
    .collect()
}

struct Sink {
  bytes: Vec<u8>,
  at: usize,
}

extern "C" fn sink_write(buffer: *mut c_void, n: usize, data: *mut c_void) -> usize {
  let sink = unsafe { &mut *(data as *mut Sink) };
  let src = unsafe { std::slice::from_raw_parts(buffer as *const u8, n) };
  let end = sink.at + n;
  if sink.bytes.len() < end {
    sink.bytes.resize(end, 0);
  }
  sink.bytes[sink.at..end].copy_from_slice(src);
  sink.at = end;
  n
}

extern "C" fn sink_skip(n: i64, data: *mut c_void) -> i64 {
  let sink = unsafe { &mut *(data as *mut Sink) };
  sink.at = (sink.at as i64 + n).max(0) as usize;
  n
}

extern "C" fn sink_seek(to: i64, data: *mut c_void) -> i32 {
  let sink = unsafe { &mut *(data as *mut Sink) };
  sink.at = to.max(0) as usize;
  1
}

struct Source<'a> {
  bytes: &'a [u8],
  at: usize,
}

extern "C" fn source_read(buffer: *mut c_void, n: usize, data: *mut c_void) -> usize {
  let source = unsafe { &mut *(data as *mut Source) };
  let left = source.bytes.len() - source.at;
  if left == 0 {
    return usize::MAX;
  }
  let n = n.min(left);
  let out = unsafe { std::slice::from_raw_parts_mut(buffer as *mut u8, n) };
  out.copy_from_slice(&source.bytes[source.at..source.at + n]);
  source.at += n;
  n
}

extern "C" fn source_skip(n: i64, data: *mut c_void) -> i64 {
  let source = unsafe { &mut *(data as *mut Source) };
  let to = (source.at as i64 + n).clamp(0, source.bytes.len() as i64);
  let moved = to - source.at as i64;
  source.at = to as usize;
  moved
}

extern "C" fn source_seek(to: i64, data: *mut c_void) -> i32 {
  let source = unsafe { &mut *(data as *mut Source) };
  if to < 0 || to as usize > source.bytes.len() {
    return 0;
  }
  source.at = to as usize;
  1
}

/// A lossless J2K codestream of `pixels` (W×H, 16 bits unsigned).
fn encode(pixels: &[i32]) -> Vec<u8> {
  unsafe {
    let mut params = opj_cparameters_t::default();
    opj_set_default_encoder_parameters(&mut params);
    params.tcp_numlayers = 1;
    params.tcp_rates[0] = 0.0;
    params.cp_disto_alloc = 1;
    // small code blocks: many of them, in several precincts and resolutions
    params.cblockw_init = 16;
    params.cblockh_init = 16;
    params.numresolution = 3;
    let mut comp = openjp2::opj_image_comptparm {
      dx: 1,
      dy: 1,
      w: W,
      h: H,
      x0: 0,
      y0: 0,
      prec: 16,
      bpp: 16,
      sgnd: 0,
    };
    let image = opj_image_create(1, &mut comp, OPJ_CLRSPC_GRAY);
    assert!(!image.is_null());
    (*image).x1 = W;
    (*image).y1 = H;
    let data = std::slice::from_raw_parts_mut((*(*image).comps).data, (W * H) as usize);
    data.copy_from_slice(pixels);

    let codec = opj_create_compress(OPJ_CODEC_J2K);
    assert!(opj_setup_encoder(codec, &mut params, image) != 0);
    let mut sink = Sink { bytes: Vec::new(), at: 0 };
    let stream = opj_stream_default_create(0);
    opj_stream_set_write_function(stream, Some(sink_write));
    opj_stream_set_skip_function(stream, Some(sink_skip));
    opj_stream_set_seek_function(stream, Some(sink_seek));
    opj_stream_set_user_data(stream, &mut sink as *mut Sink as *mut c_void, None);
    assert!(opj_start_compress(codec, image, stream) != 0);
    assert!(opj_encode(codec, stream) != 0);
    assert!(opj_end_compress(codec, stream) != 0);
    opj_stream_destroy(stream);
    opj_destroy_codec(codec);
    opj_image_destroy(image);
    sink.bytes
  }
}

/// Decodes a codestream, the whole image or (`area`) a part of it through the per-code-block
/// path, and returns the first component's width, height and samples.
fn decode(bytes: &[u8], area: Option<(i32, i32, i32, i32)>) -> Option<(u32, u32, Vec<i32>)> {
  unsafe {
    let mut source = Source { bytes, at: 0 };
    let stream = opj_stream_default_create(1);
    opj_stream_set_read_function(stream, Some(source_read));
    opj_stream_set_skip_function(stream, Some(source_skip));
    opj_stream_set_seek_function(stream, Some(source_seek));
    opj_stream_set_user_data_length(stream, bytes.len() as u64);
    opj_stream_set_user_data(stream, &mut source as *mut Source as *mut c_void, None);
    let codec = opj_create_decompress(OPJ_CODEC_J2K);
    let mut params = opj_dparameters_t::default();
    let mut image = std::ptr::null_mut::<opj_image_t>();
    let mut ok = opj_setup_decoder(codec, &mut params) != 0
      && opj_read_header(stream, codec, &mut image) != 0;
    if ok {
      if let Some((x0, y0, x1, y1)) = area {
        ok = opj_set_decode_area(codec, image, x0, y0, x1, y1) != 0;
      }
    }
    ok = ok && opj_decode(codec, stream, image) != 0 && opj_end_decompress(codec, stream) != 0;
    let out = if ok {
      let comp = &*(*image).comps;
      let samples = std::slice::from_raw_parts(comp.data, (comp.w * comp.h) as usize).to_vec();
      Some((comp.w, comp.h, samples))
    } else {
      None
    };
    opj_destroy_codec(codec);
    opj_stream_destroy(stream);
    if !image.is_null() {
      opj_image_destroy(image);
    }
    out
  }
}

#[test]
fn whole_image_decodes_to_what_was_encoded() {
  let pixels = picture();
  let bytes = encode(&pixels);
  let (w, h, decoded) = decode(&bytes, None).expect("decodes");
  assert_eq!((w, h), (W, H));
  assert_eq!(decoded, pixels);
  assert_no_null_frees();
}

#[test]
fn an_area_decodes_to_that_part_of_the_image() {
  let pixels = picture();
  let bytes = encode(&pixels);
  let (x0, y0, x1, y1) = (20u32, 10u32, 75u32, 60u32);
  let (w, h, decoded) =
    decode(&bytes, Some((x0 as i32, y0 as i32, x1 as i32, y1 as i32))).expect("decodes");
  assert_eq!((w, h), (x1 - x0, y1 - y0));
  for y in 0..h {
    for x in 0..w {
      let want = pixels[((y + y0) * W + x + x0) as usize];
      assert_eq!(decoded[(y * w + x) as usize], want, "at ({x}, {y})");
    }
  }
  assert_no_null_frees();
}
