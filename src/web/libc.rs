//! The few C library functions openjp2 (the pure-Rust port of OpenJPEG through which the page
//! decodes JPEG 2000 DICOM) calls by name, which wasm32-unknown-unknown has no libc to provide
//! (memcpy, memset and the maths come from Rust's compiler builtins): allocation over Rust's
//! allocator, each block prefixed by its size so that `free` and `realloc` know its layout, and
//! four string functions. `free(NULL)` does nothing, as C's does. (openjp2 0.6.1 also handed
//! Rust's `dealloc` null pointers, which wasm's allocator traps on: our patched copy,
//! `vendor/openjp2`, no longer does.)

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, realloc as grow};
use std::ffi::{c_char, c_int, c_void};
use std::ptr::null_mut;

/// Bytes before each block: its size, and 16-byte alignment kept as malloc keeps it.
const HEADER: usize = 16;

fn layout(size: usize) -> Option<Layout> {
    Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
}

/// # Safety
/// As C's `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    let Some(l) = layout(size) else {
        return null_mut();
    };
    // SAFETY: `l` has a non-zero size (the header); the header is written inside the block.
    unsafe {
        let base = alloc(l);
        if base.is_null() {
            return null_mut();
        }
        (base as *mut usize).write(size);
        base.add(HEADER) as *mut c_void
    }
}

/// # Safety
/// As C's `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    let Some(l) = count.checked_mul(size).and_then(layout) else {
        return null_mut();
    };
    // SAFETY: as in `malloc`.
    unsafe {
        let base = alloc_zeroed(l);
        if base.is_null() {
            return null_mut();
        }
        (base as *mut usize).write(count * size);
        base.add(HEADER) as *mut c_void
    }
}

/// # Safety
/// As C's `free`: `ptr` is null or came from `malloc`, `calloc` or `realloc` here.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: the block starts HEADER bytes before `ptr` and records its size there.
    unsafe {
        let base = (ptr as *mut u8).sub(HEADER);
        let size = (base as *const usize).read();
        dealloc(
            base,
            layout(size).expect("the layout it was allocated with"),
        );
    }
}

/// # Safety
/// As C's `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        // SAFETY: as `malloc`.
        return unsafe { malloc(size) };
    }
    let Some(new) = layout(size) else {
        return null_mut();
    };
    // SAFETY: as in `free`; the new size keeps the header.
    unsafe {
        let base = (ptr as *mut u8).sub(HEADER);
        let old = (base as *const usize).read();
        let moved = grow(base, layout(old).expect("its layout"), new.size());
        if moved.is_null() {
            return null_mut();
        }
        (moved as *mut usize).write(size);
        moved.add(HEADER) as *mut c_void
    }
}

/// # Safety
/// As C's `strlen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    // SAFETY: `s` is NUL-terminated, as C requires.
    unsafe { std::ffi::CStr::from_ptr(s).to_bytes().len() }
}

/// # Safety
/// As C's `strcpy`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcpy(dst: *mut c_char, src: *const c_char) -> *mut c_char {
    // SAFETY: `src` is NUL-terminated and `dst` holds it, as C requires.
    unsafe {
        let n = strlen(src);
        std::ptr::copy_nonoverlapping(src, dst, n + 1);
    }
    dst
}

/// # Safety
/// As C's `strncmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strncmp(a: *const c_char, b: *const c_char, n: usize) -> c_int {
    for i in 0..n {
        // SAFETY: both strings are readable up to their NUL or `n` bytes, as C requires.
        let (x, y) = unsafe { (*a.add(i) as u8, *b.add(i) as u8) };
        if x != y || x == 0 {
            return x as c_int - y as c_int;
        }
    }
    0
}

/// # Safety
/// As C's `strcmp`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcmp(a: *const c_char, b: *const c_char) -> c_int {
    // SAFETY: as `strncmp`, bounded by the NUL.
    unsafe { strncmp(a, b, usize::MAX) }
}
