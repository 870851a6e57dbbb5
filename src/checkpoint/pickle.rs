//! The pickle machine behind [`super::torch`]: the opcodes `torch.save` emits (protocol 2 to 5,
//! by their `pickletools` names), with bounds on nesting, values, memo and size. It runs no code:
//! a global is a name, refused unless a saved state dict needs it ([`allowed_global`]).

use crate::limits::Limits;
use std::collections::HashMap;

use crate::error::{Error, Result};

/// Declares each opcode as a `u8` constant named as in Python's `pickletools`.
macro_rules! opcodes {
    ($($name:ident = $byte:expr),* $(,)?) => {
        $(pub const $name: u8 = $byte;)*
    };
}

/// Opcodes by their names in Python's `pickletools`, grouped by what they do.
mod op {
    opcodes! {
        // framing
        PROTO = 0x80, FRAME = 0x95, STOP = b'.', MARK = b'(', POP = b'0',
        // scalars
        NONE = b'N', NEWTRUE = 0x88, NEWFALSE = 0x89, BININT1 = b'K', BININT2 = b'M',
        BININT = b'J', LONG1 = 0x8a, BINFLOAT = b'G',
        // strings and bytes
        BINUNICODE = b'X', SHORT_BINUNICODE = 0x8c, BINBYTES = b'B', SHORT_BINBYTES = b'C',
        // the memo
        BINPUT = b'q', LONG_BINPUT = b'r', MEMOIZE = 0x94, BINGET = b'h', LONG_BINGET = b'j',
        // containers
        EMPTY_DICT = b'}', EMPTY_LIST = b']', EMPTY_TUPLE = b')', EMPTY_SET = 0x8f,
        TUPLE = b't', TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, LIST = b'l', DICT = b'd',
        APPEND = b'a', APPENDS = b'e', SETITEM = b's', SETITEMS = b'u', ADDITEMS = 0x90,
        FROZENSET = 0x91,
        // objects (names only: nothing is imported or called)
        GLOBAL = b'c', STACK_GLOBAL = 0x93, BINPERSID = b'Q', REDUCE = b'R', NEWOBJ = 0x81,
        BUILD = b'b',
    }
}

pub(super) fn fmt_err(msg: impl Into<String>) -> Error {
    Error::CheckpointFormat(msg.into())
}

/// A decoded pickle value (scalars that never describe a tensor are kept as `Opaque`).
#[derive(Debug, Clone)]
pub(super) enum Value {
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
pub(super) struct TensorRef {
    pub storage_type: String,
    pub key: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Deepest nesting of containers a pickle may build (a state dict needs 3 or 4 levels; the
/// values are dropped and cloned recursively, so nesting is what a hostile file would use to
/// exhaust the stack).
pub const MAX_PICKLE_DEPTH: u32 = Limits::PICKLE_DEPTH.value as u32;
/// Most values a pickle may create, memo copies included (a memo fetch of a big list copies it).
pub const MAX_PICKLE_VALUES: u64 = Limits::PICKLE_VALUES.value;
/// Most memo entries.
pub const MAX_PICKLE_MEMO: usize = Limits::PICKLE_MEMO.value as usize;
/// Largest `data.pkl` (a state dict's pickle is a few hundred kB: the weights are separate).
pub const MAX_PICKLE_BYTES: usize = Limits::PICKLE_BYTES.value as usize;

/// Nesting depth and value count of what a stack entry holds.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    depth: u32,
    values: u64,
}

impl Shape {
    const LEAF: Shape = Shape {
        depth: 0,
        values: 1,
    };
    /// What a set of entries holds together.
    fn of(shapes: &[Shape]) -> Shape {
        Shape {
            depth: shapes.iter().map(|s| s.depth).max().unwrap_or(0),
            values: shapes.iter().map(|s| s.values).sum(),
        }
    }
}

/// A stack machine for the pickle opcodes that `torch.save` emits; `shapes` runs beside `stack`.
pub(super) struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    shapes: Vec<Shape>,
    memo: HashMap<u32, (Value, Shape)>,
    /// Values created so far.
    created: u64,
}

impl<'a> Unpickler<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            stack: Vec::new(),
            shapes: Vec::new(),
            memo: HashMap::new(),
            created: 0,
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

    /// Counts `values` new values against [`MAX_PICKLE_VALUES`].
    fn create(&mut self, values: u64) -> Result<()> {
        self.created = self.created.saturating_add(values);
        if self.created > MAX_PICKLE_VALUES {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle builds more than {MAX_PICKLE_VALUES} values"
            )));
        }
        Ok(())
    }

    fn push_shaped(&mut self, v: Value, shape: Shape) -> Result<()> {
        if shape.depth > MAX_PICKLE_DEPTH {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle nests containers deeper than {MAX_PICKLE_DEPTH}"
            )));
        }
        self.stack.push(v);
        self.shapes.push(shape);
        Ok(())
    }

    /// A scalar, string, global or tensor record.
    fn push(&mut self, v: Value) -> Result<()> {
        self.create(1)?;
        self.push_shaped(v, Shape::LEAF)
    }

    /// A new container around items of `inner` shape.
    fn push_container(&mut self, v: Value, inner: Shape) -> Result<()> {
        self.create(1)?;
        let shape = Shape {
            depth: inner.depth + 1,
            values: inner.values + 1,
        };
        self.push_shaped(v, shape)
    }

    /// The container on top grew by items of `inner` shape.
    fn grow_top(&mut self, inner: Shape) -> Result<()> {
        let top = self
            .shapes
            .last_mut()
            .ok_or_else(|| fmt_err("malformed pickle (stack underflow)"))?;
        top.depth = top.depth.max(inner.depth + 1);
        top.values += inner.values;
        if top.depth > MAX_PICKLE_DEPTH {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle nests containers deeper than {MAX_PICKLE_DEPTH}"
            )));
        }
        Ok(())
    }

    /// `PUT`/`BINPUT`/`LONG_BINPUT`/`MEMOIZE`: the top of the stack stored under `i`.
    fn memoize(&mut self, i: u32) -> Result<()> {
        let top = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| fmt_err("malformed pickle (memo)"))?;
        let shape = *self.shapes.last().expect("beside the stack");
        if self.memo.len() >= MAX_PICKLE_MEMO && !self.memo.contains_key(&i) {
            return Err(Error::TooLarge(format!(
                "the checkpoint's pickle memoizes more than {MAX_PICKLE_MEMO} values"
            )));
        }
        self.memo.insert(i, (top, shape));
        Ok(())
    }

    /// `GET`/`BINGET`/`LONG_BINGET`: a copy of a memoized value (counted, so that fetching a big
    /// list again and again cannot exhaust memory).
    fn fetch(&mut self, i: u32) -> Result<()> {
        let (v, shape) = self
            .memo
            .get(&i)
            .cloned()
            .ok_or_else(|| fmt_err("malformed pickle (unknown memo)"))?;
        self.create(shape.values)?;
        self.push_shaped(v, shape)
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
    fn pop_shaped(&mut self) -> Result<(Value, Shape)> {
        let v = self
            .stack
            .pop()
            .ok_or_else(|| fmt_err("malformed pickle (stack underflow)"))?;
        Ok((v, self.shapes.pop().expect("beside the stack")))
    }
    fn pop(&mut self) -> Result<Value> {
        Ok(self.pop_shaped()?.0)
    }
    /// The entries above the topmost mark (which is removed) and what they hold together.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, Shape)> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| fmt_err("malformed pickle (missing mark)"))?;
        let items = self.stack.split_off(at + 1);
        let shape = Shape::of(&self.shapes.split_off(at + 1));
        self.pop()?;
        Ok((items, shape))
    }
    fn string(&mut self, n: usize) -> Result<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    pub(super) fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                op::PROTO => {
                    self.u8()?;
                }
                op::FRAME => {
                    self.take(8)?;
                }
                op::STOP => return self.pop(),
                op::EMPTY_DICT => self.push(Value::Dict(Vec::new()))?,
                op::EMPTY_LIST => self.push(Value::List(Vec::new()))?,
                op::EMPTY_TUPLE => self.push(Value::Tuple(Vec::new()))?,
                op::MARK => self.push(Value::Mark)?,
                op::NONE => self.push(Value::None)?,
                op::NEWTRUE | op::NEWFALSE => self.push(Value::Opaque)?,
                op::BININT1 => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                op::BININT2 => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
                }
                op::BININT => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                op::LONG1 => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, byte) in b.iter().enumerate().take(8) {
                        v |= (*byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1 << (8 * n);
                    }
                    self.push(Value::Int(v))?
                }
                op::BINFLOAT => {
                    self.take(8)?; // a float: never part of a tensor record
                    self.push(Value::Opaque)?
                }
                op::BINUNICODE => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                op::SHORT_BINUNICODE => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v)?
                }
                op::BINBYTES => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Opaque)?
                }
                op::SHORT_BINBYTES => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Value::Opaque)?
                }
                op::BINPUT => {
                    let i = self.u8()? as u32;
                    self.memoize(i)?;
                }
                op::LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memoize(i)?;
                }
                op::MEMOIZE => {
                    let i = self.memo.len() as u32;
                    self.memoize(i)?;
                }
                op::BINGET | op::LONG_BINGET => {
                    let i = if op == op::BINGET {
                        self.u8()? as u32
                    } else {
                        self.u32()?
                    };
                    self.fetch(i)?
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(global(module, name)?)?
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(global(m, n)?)?,
                        _ => return Err(fmt_err("malformed pickle (STACK_GLOBAL)")),
                    }
                }
                op::TUPLE => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_container(Value::Tuple(items), inner)?
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = (op - op::TUPLE1 + 1) as usize;
                    if self.stack.len() < n {
                        return Err(fmt_err("malformed pickle (tuple)"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let inner = Shape::of(&self.shapes.split_off(self.shapes.len() - n));
                    self.push_container(Value::Tuple(items), inner)?
                }
                op::LIST => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_container(Value::List(items), inner)?
                }
                op::DICT => {
                    let (items, inner) = self.pop_mark()?;
                    let pairs = items
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| (c[0].clone(), c[1].clone()))
                        .collect();
                    self.push_container(Value::Dict(pairs), inner)?
                }
                op::APPEND => {
                    let (v, inner) = self.pop_shaped()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.push(v);
                        self.grow_top(inner)?;
                    }
                }
                op::APPENDS => {
                    let (items, inner) = self.pop_mark()?;
                    if let Some(Value::List(l)) = self.stack.last_mut() {
                        l.extend(items);
                        self.grow_top(inner)?;
                    }
                }
                op::SETITEM => {
                    let (v, vs) = self.pop_shaped()?;
                    let (k, ks) = self.pop_shaped()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.push((k, v));
                        self.grow_top(Shape::of(&[vs, ks]))?;
                    }
                }
                op::SETITEMS => {
                    let (items, inner) = self.pop_mark()?;
                    if let Some(Value::Dict(d)) = self.stack.last_mut() {
                        d.extend(
                            items
                                .chunks(2)
                                .filter(|c| c.len() == 2)
                                .map(|c| (c[0].clone(), c[1].clone())),
                        );
                        self.grow_top(inner)?;
                    }
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    self.push(storage_from_pid(pid)?)?
                }
                op::REDUCE | op::NEWOBJ => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(reduce(callable, args)?)?
                }
                op::BUILD => {
                    self.pop()?; // BUILD: object state (e.g. OrderedDict metadata), not needed
                }
                op::EMPTY_SET => self.push(Value::Opaque)?,
                op::ADDITEMS | op::FROZENSET => {
                    self.pop_mark()?;
                    if op == op::FROZENSET {
                        self.push(Value::Opaque)?
                    }
                }
                op::POP => {
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

/// Whether a state dict may name this global: the tensor rebuilds, the containers, storage
/// types, dtypes and the few value types `torch.save` writes beside weights.
pub(super) fn allowed_global(module: &str, name: &str) -> bool {
    match module {
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor"
                | "_rebuild_tensor_v2"
                | "_rebuild_parameter"
                | "_rebuild_parameter_with_state"
        ),
        "collections" => name == "OrderedDict",
        "builtins" | "__builtin__" => {
            matches!(name, "dict" | "list" | "set" | "frozenset" | "tuple")
        }
        "torch" => {
            name.ends_with("Storage")
                || matches!(name, "Size" | "device")
                || matches!(
                    name,
                    "float32"
                        | "float16"
                        | "bfloat16"
                        | "float64"
                        | "int64"
                        | "int32"
                        | "int16"
                        | "int8"
                        | "uint8"
                        | "bool"
                )
        }
        _ => false,
    }
}

fn global(module: String, name: String) -> Result<Value> {
    if !allowed_global(&module, &name) {
        return Err(Error::CheckpointFormat(format!(
            "the checkpoint's pickle refers to `{module}.{name}`, which is not part of a saved \
             state dict; it is refused (this reader runs no code: save the weights with \
             torch.save(model.state_dict()) or as safetensors)"
        )));
    }
    Ok(Value::Global(module, name))
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
            let offset = usize::try_from(*offset)
                .map_err(|_| fmt_err(format!("tensor offset {offset} is negative")))?;
            let shape = as_usizes(size)?;
            let stride = as_usizes(stride)?;
            if shape.len() != stride.len() {
                return Err(fmt_err("tensor size and stride differ in length"));
            }
            Value::Tensor(TensorRef {
                storage_type: storage_type.clone(),
                key: key.clone(),
                offset,
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
