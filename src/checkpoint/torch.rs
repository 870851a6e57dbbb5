//! Reader for PyTorch `torch.save` files (zip container + pickle protocol 2), from bytes, so it
//! works in the browser too. Only what state dicts need is understood: dicts, lists, tuples,
//! scalars, strings, `OrderedDict`, `_rebuild_tensor_v2` / `_rebuild_parameter` and the
//! persistent storage references; anything else becomes an opaque value, never code execution.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::{RawTensor, TensorDType};
use crate::error::{Error, Result};

/// A decoded pickle value (scalars that never describe a tensor are kept as `Opaque`).
#[derive(Debug, Clone)]
enum Value {
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// A storage reference: (dtype name, zip key, element count).
    Storage(String, String),
    Tensor(TensorRef),
    Opaque,
    Mark,
}

#[derive(Debug, Clone)]
struct TensorRef {
    storage_type: String,
    key: String,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

fn fmt_err(msg: impl Into<String>) -> Error {
    Error::CheckpointFormat(msg.into())
}

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
    let pkl = read_entry(&mut zip, &pkl_name)?;
    let root = Unpickler::new(&pkl).run()?;

    let dict = state_dict(root)?;
    let mut out = Vec::new();
    for (k, v) in dict {
        let Value::Str(name) = k else { continue };
        match v {
            Value::Tensor(t) => {
                let data = read_entry(&mut zip, &format!("{prefix}data/{}", t.key))?;
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

fn read_entry(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| fmt_err(format!("archive entry {name}: {e}")))?;
    let mut buf = Vec::with_capacity(f.size().min(1 << 30) as usize);
    f.read_to_end(&mut buf)
        .map_err(|e| fmt_err(format!("archive entry {name} is damaged ({e})")))?;
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
    let numel: usize = t.shape.iter().product();
    let mut elems = Vec::with_capacity(numel);
    if numel > 0 {
        let max_index = t.offset
            + t.shape
                .iter()
                .zip(&t.stride)
                .map(|(d, s)| (d - 1) * s)
                .sum::<usize>();
        if (max_index + 1) * size > data.len() {
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

/// A stack machine for the pickle opcodes that `torch.save` emits.
struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Unpickler<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.pos + n > self.data.len() {
            return Err(fmt_err("pickle stream ends early (truncated checkpoint)"));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// `PUT`/`BINPUT`/`LONG_BINPUT`/`MEMOIZE`: the top of the stack stored under `i`.
    fn memoize(&mut self, i: u32) -> Result<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| fmt_err("malformed pickle (memo)"))?;
        self.memo.insert(i, top);
        Ok(())
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<String> {
        let start = self.pos;
        while self.u8()? != b'\n' {}
        Ok(String::from_utf8_lossy(&self.data[start..self.pos - 1]).into_owned())
    }
    fn pop(&mut self) -> Result<Value> {
        self.stack
            .pop()
            .ok_or_else(|| fmt_err("malformed pickle (stack underflow)"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| fmt_err("malformed pickle (missing mark)"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn string(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 | 0x89 => self.stack.push(Value::Opaque), // booleans
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v))
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.stack.push(Value::Int(v))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, byte) in b.iter().enumerate().take(8) {
                        v |= (*byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1 << (8 * n);
                    }
                    self.stack.push(Value::Int(v))
                }
                b'G' => {
                    self.take(8)?; // a float: never part of a tensor record
                    self.stack.push(Value::Opaque)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memoize(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memoize(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memoize(i)?;
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    let v = self
                        .memo
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| fmt_err("malformed pickle (unknown memo)"))?;
                    self.stack.push(v)
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(fmt_err("malformed pickle (STACK_GLOBAL)")),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(fmt_err("malformed pickle (tuple)"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.stack.push(Value::Dict(pairs))
                }
                b'a' => {
                    let v = self.pop()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.push(v)
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.extend(items)
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.push((k, v))
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.extend(
                            items
                                .chunks(2)
                                .filter(|c| c.len() == 2)
                                .map(|c| (c[0].clone(), c[1].clone())),
                        );
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(storage_from_pid(pid)?)
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?)
                }
                b'b' => {
                    self.pop()?; // BUILD: object state (e.g. OrderedDict metadata), not needed
                }
                0x8f => self.stack.push(Value::Opaque), // EMPTY_SET
                0x90 | 0x91 => {
                    self.pop_mark()?; // ADDITEMS / FROZENSET
                    if op == 0x91 {
                        self.stack.push(Value::Opaque)
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                _ => {
                    return Err(fmt_err(format!(
                        "unsupported pickle opcode 0x{op:02x} at byte {}",
                        self.pos - 1
                    )));
                }
            }
        }
    }
}

fn storage_from_pid(pid: Value) -> Result<Value> {
    if let Value::Tuple(items) = pid
        && items.len() >= 3
        && let (Value::Global(_, ty), Value::Str(key)) = (&items[1], &items[2])
    {
        return Ok(Value::Storage(ty.clone(), key.clone()));
    }
    Err(fmt_err("unsupported persistent reference in the pickle"))
}

fn as_usizes(v: &Value) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(fmt_err("tensor size/stride is not a tuple of integers")),
            })
            .collect(),
        _ => Err(fmt_err("tensor size/stride is not a tuple")),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(module, name) = &callable else {
        return Ok(Value::Opaque);
    };
    let args = match args {
        Value::Tuple(a) => a,
        _ => return Ok(Value::Opaque),
    };
    Ok(match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let [storage, offset, size, stride, ..] = args.as_slice() else {
                return Err(fmt_err("malformed tensor record"));
            };
            let Value::Storage(storage_type, key) = storage else {
                return Err(fmt_err("tensor record without storage"));
            };
            let Value::Int(offset) = offset else {
                return Err(fmt_err("tensor offset is not an integer"));
            };
            let shape = as_usizes(size)?;
            let stride = as_usizes(stride)?;
            if shape.len() != stride.len() {
                return Err(fmt_err("tensor size and stride differ in length"));
            }
            Value::Tensor(TensorRef {
                storage_type: storage_type.clone(),
                key: key.clone(),
                offset: *offset as usize,
                shape,
                stride,
            })
        }
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            args.into_iter().next().unwrap_or(Value::Opaque)
        }
        ("collections", "OrderedDict") | ("builtins", "dict") => Value::Dict(Vec::new()),
        _ => Value::Opaque,
    })
}
