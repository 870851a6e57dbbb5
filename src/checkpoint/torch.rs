//! Reader for PyTorch `torch.save` files (zip container + pickle protocol 2), from bytes, so it
//! works in the browser too. Only what state dicts need is understood: dicts, lists, tuples,
//! scalars, strings, `OrderedDict`, `_rebuild_tensor_v2` / `_rebuild_parameter` and the
//! persistent storage references. The reader runs no code, and it refuses by name any global
//! a pickle refers to beyond those a saved state dict needs ([`allowed_global`]): a checkpoint
//! that would call `os.system` or build a custom class under `torch.load` is not a set of
//! weights.

use std::io::{Cursor, Read};

pub use super::pickle::{MAX_PICKLE_BYTES, MAX_PICKLE_DEPTH, MAX_PICKLE_MEMO, MAX_PICKLE_VALUES};
use super::pickle::{TensorRef, Unpickler, Value, fmt_err};
use super::{RawTensor, TensorDType};
use crate::error::{Error, Result};

/// Reads every tensor of a `torch.save` archive into `name → tensor`, descending into the
/// `model` / `state_dict` entry when the top level is a wrapper dict.
pub fn read_torch(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| fmt_err(format!("PyTorch archive is damaged or truncated ({e})")))?;
    let pkl_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).map(str::to_owned))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| fmt_err("zip file has no data.pkl: not a PyTorch checkpoint"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_owned();
    let pkl = read_entry(
        &mut zip,
        &pkl_name,
        MAX_PICKLE_BYTES as u64,
        "a state dict's pickle",
    )?;
    let root = Unpickler::new(&pkl).run()?;

    let dict = state_dict(root)?;
    let mut out = Vec::new();
    for (k, v) in dict {
        let Value::Str(name) = k else { continue };
        match v {
            Value::Tensor(t) => {
                let data = read_entry(
                    &mut zip,
                    &format!("{prefix}data/{}", t.key),
                    MAX_ENTRY_BYTES,
                    "one tensor storage",
                )?;
                out.push((name.clone(), materialize(&name, &t, &data)?));
            }
            // Non-tensor entries (e.g. `_metadata`, step counters) are not weights.
            _ => continue,
        }
    }
    if out.is_empty() {
        return Err(fmt_err("the PyTorch file holds no tensors"));
    }
    Ok(out)
}

/// Picks the state dict out of the unpickled root.
fn state_dict(root: Value) -> Result<Vec<(Value, Value)>> {
    let Value::Dict(items) = root else {
        return Err(fmt_err("the PyTorch file does not hold a dict of tensors"));
    };
    let has_tensor = items.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    if !has_tensor {
        for key in ["model", "state_dict", "model_state_dict", "ema", "params"] {
            if let Some((_, Value::Dict(inner))) = items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
            {
                return Ok(inner.clone());
            }
        }
    }
    Ok(items)
}

/// Most bytes one tensor storage may inflate to: what a whole checkpoint may hold (weights are
/// stored uncompressed by `torch.save`, so this bounds only hostile deflate streams).
pub const MAX_ENTRY_BYTES: u64 = super::MAX_CHECKPOINT_BYTES;

/// One entry, read to its end but never past `limit` bytes (`what` names the limit in the
/// error); the buffer grows with what is read, not with the size the entry declares.
fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    let archive_len = zip.clone().into_inner().into_inner().len() as u64;
    let f = zip
        .by_name(name)
        .map_err(|e| fmt_err(format!("archive entry {name}: {e}")))?;
    let mut buf = Vec::with_capacity(f.size().min(archive_len).min(limit) as usize);
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| fmt_err(format!("archive entry {name} is damaged ({e})")))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge(format!(
            "archive entry {name} inflates past {} MiB, the limit of {what}",
            limit >> 20
        )));
    }
    Ok(buf)
}

/// Gathers a (possibly strided) tensor view out of its storage bytes.
fn materialize(name: &str, t: &TensorRef, data: &[u8]) -> Result<RawTensor> {
    let dtype = match t.storage_type.as_str() {
        "FloatStorage" => TensorDType::F32,
        "HalfStorage" => TensorDType::F16,
        "BFloat16Storage" => TensorDType::BF16,
        "DoubleStorage" => TensorDType::F64,
        "LongStorage" => TensorDType::I64,
        "IntStorage" => TensorDType::I32,
        "ByteStorage" | "CharStorage" | "BoolStorage" | "ShortStorage" => TensorDType::Other,
        other => {
            return Err(fmt_err(format!(
                "tensor '{name}' uses an unknown storage type {other}"
            )));
        }
    };
    let size = dtype.size();
    let numel = super::checked_elements(name, &t.shape)?;
    let mut elems = Vec::with_capacity(numel * size);
    if numel > 0 {
        let past_end = || {
            fmt_err(format!(
                "tensor '{name}' points past the end of its storage (truncated file?)"
            ))
        };
        let max_index = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (d, s)| {
                acc.checked_add((d - 1).checked_mul(*s)?)
            })
            .ok_or_else(past_end)?;
        if max_index
            .checked_add(1)
            .and_then(|n| n.checked_mul(size))
            .is_none_or(|end| end > data.len())
        {
            return Err(fmt_err(format!(
                "tensor '{name}' points past the end of its storage (truncated file?)"
            )));
        }
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let lin = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            elems.extend_from_slice(&data[lin * size..(lin + 1) * size]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Ok(RawTensor {
        shape: t.shape.clone(),
        dtype,
        bytes: elems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::pickle::allowed_global;
    use std::io::Write;

    /// A `torch.save`-shaped archive around `pickle` (and no tensor data).
    fn archive(pickle: &[u8]) -> Vec<u8> {
        zip_of("archive/data.pkl", pickle, zip::CompressionMethod::Stored)
    }

    /// A zip of one entry, stored or deflated.
    fn zip_of(name: &str, bytes: &[u8], method: zip::CompressionMethod) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
        zip.finish().unwrap().into_inner()
    }

    fn deflated(name: &str, bytes: &[u8]) -> Vec<u8> {
        zip_of(name, bytes, zip::CompressionMethod::Deflated)
    }

    #[test]
    fn a_pickle_that_inflates_past_its_limit_is_refused_before_unpickling() {
        // an empty dict, then padding after STOP: the unpickler reads up to STOP
        let mut pickle = b"\x80\x02}q\x00.".to_vec();
        pickle.resize(MAX_PICKLE_BYTES, 0);
        let under = read_torch(&deflated("archive/data.pkl", &pickle))
            .unwrap_err()
            .to_string();
        assert!(under.contains("holds no tensors"), "{under}");
        pickle.push(0);
        let over = read_torch(&deflated("archive/data.pkl", &pickle)).unwrap_err();
        assert!(matches!(over, Error::TooLarge(_)), "{over}");
        assert!(over.to_string().contains("a state dict's pickle"), "{over}");
    }

    #[test]
    fn an_entry_is_read_up_to_its_limit_and_not_past_it() {
        let bytes = deflated("archive/data/0", &[7u8; 4096]);
        let mut zip = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let ok = read_entry(&mut zip, "archive/data/0", 4096, "a storage").unwrap();
        assert_eq!(ok, vec![7u8; 4096]);
        let e = read_entry(&mut zip, "archive/data/0", 4095, "a storage").unwrap_err();
        assert!(e.to_string().contains("the limit of a storage"), "{e}");
    }

    fn refused(pickle: &[u8]) -> String {
        match read_torch(&archive(pickle)) {
            Err(e) => e.to_string(),
            Ok(t) => panic!("read {} tensor(s) from a hostile pickle", t.len()),
        }
    }

    #[test]
    fn a_pickle_that_would_run_code_is_refused_by_name() {
        // protocol 2: GLOBAL posix.system, called on "ls" (what `pickle.dumps` of a __reduce__
        // returning (os.system, ("ls",)) writes)
        let e = refused(b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.");
        assert!(e.contains("posix.system"), "{e}");
        // protocol 4: STACK_GLOBAL builtins.eval
        let e = refused(
            b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x011\x94\x85\x94R\x94.",
        );
        assert!(e.contains("builtins.eval"), "{e}");
        // a custom class, as `torch.save(model)` of a whole module writes it: NEWOBJ + BUILD
        let e = refused(b"\x80\x02c__main__\nNet\nq\x00)\x81q\x01}q\x02b.");
        assert!(e.contains("__main__.Net"), "{e}");
        // a global inside an otherwise plain dict
        let e = refused(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01csubprocess\nPopen\nq\x02s.");
        assert!(e.contains("subprocess.Popen"), "{e}");
    }

    #[test]
    fn what_a_state_dict_needs_is_allowed() {
        for (m, n) in [
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_parameter"),
            ("collections", "OrderedDict"),
            ("torch", "FloatStorage"),
            ("torch", "HalfStorage"),
        ] {
            assert!(allowed_global(m, n), "{m}.{n}");
        }
        for (m, n) in [("torch", "load"), ("os", "system"), ("builtins", "getattr")] {
            assert!(!allowed_global(m, n), "{m}.{n}");
        }
        // an OrderedDict of no tensors reads as a well-formed pickle that holds no weights
        let e = refused(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.");
        assert!(e.contains("holds no tensors"), "{e}");
    }

    #[test]
    fn nesting_and_memo_copies_have_limits_just_over_and_under() {
        // lists nested `n` deep: `]` n + 1 times, then `a` n times
        let nested = |n: usize| {
            let mut p = b"\x80\x02".to_vec();
            p.extend(std::iter::repeat_n(b']', n + 1));
            p.extend(std::iter::repeat_n(b'a', n));
            p.push(b'.');
            p
        };
        let under = Unpickler::new(&nested(MAX_PICKLE_DEPTH as usize)).run();
        assert!(matches!(under, Ok(Value::List(_))), "{under:?}");
        let e = refused(&nested(MAX_PICKLE_DEPTH as usize + 1));
        assert!(e.contains("deeper than 64"), "{e}");
        // a nesting near a million levels (which would overflow the stack when dropped)
        let e = refused(&nested(1_000_000));
        assert!(e.contains("deeper than"), "{e}");
        // a list of 4096 values fetched from the memo again and again: 4097 values a copy
        let copies = |n: usize| {
            let mut p = b"\x80\x02](".to_vec();
            p.extend(std::iter::repeat_n(&b"K\x01"[..], 4096).flatten());
            p.extend(b"eq\x00]"); // memo 0 = the list; a new outer list
            for _ in 0..n {
                p.extend(b"h\x00a");
            }
            p.push(b'.');
            p
        };
        // values: the list, its 4096 items, the outer list, then 4097 per copy
        let n_ok = ((MAX_PICKLE_VALUES - 4098) / 4097) as usize;
        assert!(Unpickler::new(&copies(n_ok)).run().is_ok());
        let e = refused(&copies(n_ok + 1));
        assert!(
            e.contains(&format!("more than {MAX_PICKLE_VALUES} values")),
            "{e}"
        );
    }

    #[test]
    fn a_negative_tensor_offset_is_refused() {
        // {"w": _rebuild_tensor_v2(storage("FloatStorage", "0"), -1, (1,), (1,))}
        let pickle = b"\x80\x02}q\x00X\x01\x00\x00\x00wq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x000q\x05X\x03\x00\x00\x00cpuq\x06K\x01tq\x07QJ\xff\xff\xff\xffK\x01\x85K\x01\x85tq\x08Rq\x09s.";
        let e = refused(pickle);
        assert!(e.contains("offset -1 is negative"), "{e}");
    }
}
