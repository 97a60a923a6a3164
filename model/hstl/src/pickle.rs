//! A pickle virtual machine for what `torch.save` writes.
//!
//! It understands the opcodes of pickle protocols 2 to 5 that appear in PyTorch checkpoints and
//! never executes anything: a `GLOBAL` becomes a name, a `REDUCE` becomes an [`Value::Object`] that
//! records the callable and its arguments. Only the two tensor rebuild functions are interpreted,
//! because they are what a checkpoint is made of.
//!
//! Memo entries are copies, not shared references; PyTorch checkpoints never mutate a container
//! after referring to it again, so the difference cannot be observed in them.

use std::collections::HashMap;

use crate::error::HstlError;

/// Element type of a PyTorch storage, from the legacy storage class name (`torch.FloatStorage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    /// float64
    F64,
    /// float32
    F32,
    /// float16
    F16,
    /// bfloat16
    BF16,
    /// int64
    I64,
    /// int32
    I32,
    /// int16
    I16,
    /// int8
    I8,
    /// uint8
    U8,
    /// bool
    Bool,
}

impl StorageDtype {
    fn from_class_name(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => Self::F64,
            "FloatStorage" => Self::F32,
            "HalfStorage" => Self::F16,
            "BFloat16Storage" => Self::BF16,
            "LongStorage" => Self::I64,
            "IntStorage" => Self::I32,
            "ShortStorage" => Self::I16,
            "CharStorage" => Self::I8,
            "ByteStorage" => Self::U8,
            "BoolStorage" => Self::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

/// A tensor as the pickle describes it: a view into a storage record of the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The archive record holding the storage.
    pub storage_key: String,
    /// Element type of the storage.
    pub dtype: StorageDtype,
    /// First element of the view, in elements.
    pub storage_offset: usize,
    /// Shape of the view.
    pub shape: Vec<usize>,
    /// Strides of the view, in elements.
    pub stride: Vec<usize>,
}

/// A value the pickle machine built: plain data, or a description of what a call would have made (nothing is ever called).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python's `None`.
    None,
    /// A boolean.
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict (or `OrderedDict`), in insertion order.
    Dict(Vec<(Value, Value)>),
    /// A global a pickle names (a class or function), never imported.
    Global {
        /// Its module.
        module: String,
        /// Its name.
        name: String,
    },
    /// A call the pickle asks for, recorded rather than made.
    Object {
        /// What would be called.
        callable: Box<Value>,
        /// With these arguments.
        args: Box<Value>,
    },
    /// A storage record of the archive (a persistent id).
    Storage {
        /// The record's name in the archive.
        key: String,
        /// Its element type.
        dtype: StorageDtype,
    },
    /// A tensor rebuilt from a storage by `torch._utils._rebuild_tensor_v2`.
    Tensor(TensorRef),
    /// A numpy array rebuilt from `numpy.core.multiarray._reconstruct` and its state.
    NumpyArray {
        /// The dtype's type string without byte order, e.g. `u1`, `f4`.
        dtype: String,
        /// Shape of the array.
        shape: Vec<usize>,
        /// Column-major storage.
        fortran_order: bool,
        /// Its bytes.
        data: Vec<u8>,
    },
}

impl Value {
    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Dictionary entries, including those of an `OrderedDict` rebuilt by `REDUCE`.
    pub fn dict_entries(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value under a string key, when this is a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.dict_entries()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

/// What copying `value` costs: one per node, one per 16 bytes of payload; stops counting past `limit`.
fn copy_cost(value: &Value, limit: usize) -> usize {
    let mut cost = 1;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        if cost > limit {
            break;
        }
        match value {
            Value::Str(s) => cost += s.len() / 16,
            Value::Bytes(b) => cost += b.len() / 16,
            Value::NumpyArray { data, shape, .. } => cost += data.len() / 16 + shape.len(),
            Value::Tuple(items) | Value::List(items) => {
                cost += items.len();
                pending.extend(items);
            }
            Value::Dict(entries) => {
                cost += 2 * entries.len();
                for (k, v) in entries {
                    pending.push(k);
                    pending.push(v);
                }
            }
            Value::Object { callable, args } => {
                cost += 2;
                pending.push(callable);
                pending.push(args);
            }
            Value::Tensor(t) => cost += t.shape.len() + t.stride.len() + t.storage_key.len() / 16,
            _ => {}
        }
    }
    cost
}

fn is_numpy_reconstruct(value: &Value) -> bool {
    let Value::Object { callable, .. } = value else {
        return false;
    };
    matches!(callable.as_ref(), Value::Global { module, name }
        if (module == "numpy.core.multiarray" || module == "numpy._core.multiarray")
            && name == "_reconstruct")
}

/// A value on the machine's stack, with how deeply containers nest inside it (0 for a scalar).
enum StackItem {
    Mark,
    Value(Value, u32),
}

/// The opcodes this reader runs, named as Python's `pickletools` names them (protocols 0-5; the
/// text-mode opcodes of protocol 0, which checkpoints never use, are left out).
mod op {
    pub const ADDITEMS: u8 = 0x90;
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const BINBYTES: u8 = b'B';
    pub const BINFLOAT: u8 = b'G';
    pub const BINGET: u8 = b'h';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const BINPERSID: u8 = b'Q';
    pub const BINPUT: u8 = b'q';
    pub const BINSTRING: u8 = b'T';
    pub const BINUNICODE: u8 = b'X';
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BUILD: u8 = b'b';
    pub const BYTEARRAY8: u8 = 0x96;
    pub const DUP: u8 = b'2';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_SET: u8 = 0x8f;
    pub const EMPTY_TUPLE: u8 = b')';
    pub const FRAME: u8 = 0x95;
    pub const FROZENSET: u8 = 0x91;
    pub const GLOBAL: u8 = b'c';
    pub const LONG1: u8 = 0x8a;
    pub const LONG_BINGET: u8 = b'j';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MARK: u8 = b'(';
    pub const MEMOIZE: u8 = 0x94;
    pub const NEWFALSE: u8 = 0x89;
    pub const NEWOBJ: u8 = 0x81;
    pub const NEWTRUE: u8 = 0x88;
    pub const NONE: u8 = b'N';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const PROTO: u8 = 0x80;
    pub const REDUCE: u8 = b'R';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const STOP: u8 = b'.';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
}

/// Containers nested deeper than this are refused: a state dict nests a few levels, and dropping or
/// cloning a value walks its nesting recursively, so a crafted pickle could overflow the stack.
pub const MAX_NESTING: u32 = 64;
/// Values copied from the memo or duplicated, counted in nodes plus bytes/16: a real checkpoint
/// copies a few thousand, a crafted pickle could double a value at every opcode.
pub const MAX_COPIED_COST: usize = 1 << 24;

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<StackItem>,
    memo: HashMap<u32, (Value, u32)>,
    copied_cost: usize,
    copy_budget: usize,
}

/// Parses one pickle and returns the object it builds.
pub fn parse(bytes: &[u8]) -> Result<Value, HstlError> {
    parse_with_copy_budget(bytes, MAX_COPIED_COST)
}

/// [`parse`] with another copy budget than [`MAX_COPIED_COST`] (tests reach a small one quickly).
fn parse_with_copy_budget(bytes: &[u8], copy_budget: usize) -> Result<Value, HstlError> {
    let mut machine = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        copied_cost: 0,
        copy_budget,
    };
    machine.run()
}

impl<'a> Machine<'a> {
    fn error(&self, message: impl Into<String>) -> HstlError {
        HstlError::Pickle {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], HstlError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.error("unexpected end of pickle data (file truncated?)")),
        }
    }

    fn u8(&mut self) -> Result<u8, HstlError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HstlError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, HstlError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, HstlError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Result<String, HstlError> {
        let rest = &self.bytes[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("unterminated text line"))?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.pos += len + 1;
        Ok(text)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, HstlError> {
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec())
            .map(Value::Str)
            .map_err(|_| self.error("string is not valid UTF-8"))
    }

    fn push(&mut self, value: Value) {
        self.stack.push(StackItem::Value(value, 0));
    }

    /// Pushes a container whose items nest `inner` deep.
    fn push_container(&mut self, value: Value, inner: u32) -> Result<(), HstlError> {
        let depth = inner + 1;
        if depth > MAX_NESTING {
            return Err(self.error(format!("containers nested more than {MAX_NESTING} deep")));
        }
        self.stack.push(StackItem::Value(value, depth));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, HstlError> {
        self.pop_with_depth().map(|(value, _)| value)
    }

    fn pop_with_depth(&mut self) -> Result<(Value, u32), HstlError> {
        match self.stack.pop() {
            Some(StackItem::Value(v, depth)) => Ok((v, depth)),
            Some(StackItem::Mark) => Err(self.error("unexpected mark on the stack")),
            None => Err(self.error("pop from an empty stack")),
        }
    }

    fn top(&mut self) -> Result<&mut Value, HstlError> {
        self.top_with_depth().map(|(value, _)| value)
    }

    fn top_with_depth(&mut self) -> Result<(&mut Value, &mut u32), HstlError> {
        let pos = self.pos;
        match self.stack.last_mut() {
            Some(StackItem::Value(v, depth)) => Ok((v, depth)),
            _ => Err(HstlError::Pickle {
                offset: pos,
                message: "expected a value on the stack".into(),
            }),
        }
    }

    /// The items above the last mark, and how deep the deepest of them nests.
    fn pop_to_mark(&mut self) -> Result<(Vec<Value>, u32), HstlError> {
        let mut items = Vec::new();
        let mut deepest = 0;
        loop {
            match self.stack.pop() {
                Some(StackItem::Mark) => break,
                Some(StackItem::Value(v, depth)) => {
                    deepest = deepest.max(depth);
                    items.push(v);
                }
                None => return Err(self.error("no mark on the stack")),
            }
        }
        items.reverse();
        Ok((items, deepest))
    }

    /// A copy of `value` (memo or DUP), charged to the copy budget.
    fn copy(&mut self, value: &Value) -> Result<Value, HstlError> {
        let budget = self.copy_budget.saturating_sub(self.copied_cost);
        let cost = copy_cost(value, budget);
        if cost > budget {
            return Err(self.error(format!(
                "the pickle copies more than {} units of values (a crafted file?)",
                self.copy_budget
            )));
        }
        self.copied_cost += cost;
        Ok(value.clone())
    }

    fn memo_get(&mut self, index: u32) -> Result<(Value, u32), HstlError> {
        let (value, depth) = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.error(format!("memo entry {index} is not defined")))?;
        self.copy(&value)?;
        Ok((value, depth))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), HstlError> {
        let (value, depth) = self.top_with_depth()?;
        let entry = (value.clone(), *depth);
        self.copy(&entry.0)?;
        self.memo.insert(index, entry);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>, inner: u32) -> Result<(), HstlError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("odd number of items for a dictionary"));
        }
        self.deepen_top(inner)?;
        let pos = self.pos;
        let target = self.top()?;
        let entries = match target {
            Value::Dict(entries) => entries,
            // Objects built by REDUCE (OrderedDict, Counter) receive their items afterwards.
            Value::Object { .. } => {
                *target = Value::Dict(Vec::new());
                match target {
                    Value::Dict(entries) => entries,
                    _ => unreachable!("just assigned a dictionary"),
                }
            }
            _ => {
                return Err(HstlError::Pickle {
                    offset: pos,
                    message: "SETITEMS on a non-dictionary".into(),
                })
            }
        };
        let mut iter = items.into_iter();
        while let (Some(k), Some(v)) = (iter.next(), iter.next()) {
            entries.push((k, v));
        }
        Ok(())
    }

    fn append_items(&mut self, items: Vec<Value>, inner: u32) -> Result<(), HstlError> {
        self.deepen_top(inner)?;
        let pos = self.pos;
        match self.top()? {
            Value::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err(HstlError::Pickle {
                offset: pos,
                message: "APPENDS on a non-list".into(),
            }),
        }
    }

    /// The top container receives items nesting `inner` deep.
    fn deepen_top(&mut self, inner: u32) -> Result<(), HstlError> {
        let pos = self.pos;
        let (_, depth) = self.top_with_depth()?;
        *depth = (*depth).max(inner + 1);
        if *depth > MAX_NESTING {
            return Err(HstlError::Pickle {
                offset: pos,
                message: format!("containers nested more than {MAX_NESTING} deep"),
            });
        }
        Ok(())
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value, HstlError> {
        let Value::Global { module, name } = &callable else {
            return Ok(Value::Object {
                callable: Box::new(callable),
                args: Box::new(args),
            });
        };
        match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                self.rebuild_tensor(args)
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args {
                Value::Tuple(mut items) if !items.is_empty() => Ok(items.swap_remove(0)),
                _ => Err(self.error("_rebuild_parameter without a tensor argument")),
            },
            ("collections", "OrderedDict") => Ok(Value::Dict(Vec::new())),
            ("numpy.core.numeric", "_frombuffer") | ("numpy._core.numeric", "_frombuffer") => {
                self.numpy_from_buffer(args)
            }
            // Protocol 2 stores bytes as a latin-1 string passed to `_codecs.encode`.
            ("_codecs", "encode") => match args {
                Value::Tuple(items) if items.len() == 2 => match (&items[0], &items[1]) {
                    (Value::Str(text), Value::Str(encoding)) if encoding == "latin1" => text
                        .chars()
                        .map(|c| u8::try_from(c as u32))
                        .collect::<Result<Vec<u8>, _>>()
                        .map(Value::Bytes)
                        .map_err(|_| self.error("latin-1 bytes hold a character above 255")),
                    _ => Err(self.error("_codecs.encode of something other than latin-1 text")),
                },
                _ => Err(self.error("_codecs.encode needs two arguments")),
            },
            _ => Ok(Value::Object {
                callable: Box::new(callable),
                args: Box::new(args),
            }),
        }
    }

    /// The state of `ndarray.__reduce__`: (version, shape, dtype, is_fortran, raw bytes).
    fn numpy_array(&self, state: Value) -> Result<Value, HstlError> {
        let Value::Tuple(items) = state else {
            return Err(self.error("numpy array state is not a tuple"));
        };
        let [_, shape, dtype, Value::Bool(fortran_order), Value::Bytes(data)] = items.as_slice()
        else {
            return Err(self.error(
                "numpy array state is not (version, shape, dtype, fortran, bytes) (an object array?)",
            ));
        };
        self.numpy_value(dtype, shape, *fortran_order, data)
    }

    /// Protocol 5's `numpy._core.numeric._frombuffer(buffer, dtype, shape, order)`.
    fn numpy_from_buffer(&self, args: Value) -> Result<Value, HstlError> {
        match args {
            Value::Tuple(items) => match items.as_slice() {
                [Value::Bytes(data), dtype, shape, Value::Str(order)] => {
                    self.numpy_value(dtype, shape, order == "F", data)
                }
                _ => Err(self.error("_frombuffer arguments are not (bytes, dtype, shape, order)")),
            },
            _ => Err(self.error("_frombuffer arguments are not a tuple")),
        }
    }

    fn numpy_value(
        &self,
        dtype: &Value,
        shape: &Value,
        fortran_order: bool,
        data: &[u8],
    ) -> Result<Value, HstlError> {
        let Value::Tuple(dims) = shape else {
            return Err(self.error("numpy array shape is not a tuple"));
        };
        let shape = dims
            .iter()
            .map(|d| match d {
                Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => Err(self.error("numpy array dimension is not a non-negative integer")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dtype = match dtype {
            Value::Object { callable, args }
                if matches!(callable.as_ref(), Value::Global { name, .. } if name == "dtype") =>
            {
                match args.as_ref() {
                    Value::Tuple(a) => a.first().and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                }
            }
            _ => None,
        }
        .ok_or_else(|| self.error("numpy array dtype is not a numpy.dtype"))?;
        Ok(Value::NumpyArray {
            dtype,
            shape,
            fortran_order,
            data: data.to_vec(),
        })
    }

    fn rebuild_tensor(&self, args: Value) -> Result<Value, HstlError> {
        let Value::Tuple(items) = args else {
            return Err(self.error("tensor rebuild arguments are not a tuple"));
        };
        let (
            Some(Value::Storage { key, dtype }),
            Some(Value::Int(offset)),
            Some(size),
            Some(stride),
        ) = (items.first(), items.get(1), items.get(2), items.get(3))
        else {
            return Err(
                self.error("tensor rebuild arguments are not (storage, offset, size, stride, ...)")
            );
        };
        let dims = |v: &Value| -> Result<Vec<usize>, HstlError> {
            match v {
                Value::Tuple(d) => d
                    .iter()
                    .map(|x| match x {
                        Value::Int(i) if *i >= 0 => Ok(*i as usize),
                        _ => Err(self.error("tensor size or stride is not a non-negative integer")),
                    })
                    .collect(),
                _ => Err(self.error("tensor size or stride is not a tuple")),
            }
        };
        let shape = dims(size)?;
        let stride = dims(stride)?;
        if shape.len() != stride.len() {
            return Err(self.error("tensor size and stride have different ranks"));
        }
        let storage_offset =
            usize::try_from(*offset).map_err(|_| self.error("negative tensor storage offset"))?;
        Ok(Value::Tensor(TensorRef {
            storage_key: key.clone(),
            dtype: *dtype,
            storage_offset,
            shape,
            stride,
        }))
    }

    fn persistent_load(&self, pid: Value) -> Result<Value, HstlError> {
        let Value::Tuple(items) = pid else {
            return Err(self.error("persistent id is not a tuple"));
        };
        match (items.first(), items.get(1), items.get(2)) {
            (Some(Value::Str(kind)), Some(Value::Global { name, .. }), Some(Value::Str(key)))
                if kind == "storage" =>
            {
                let dtype = StorageDtype::from_class_name(name)
                    .ok_or_else(|| self.error(format!("unsupported storage type torch.{name}")))?;
                Ok(Value::Storage {
                    key: key.clone(),
                    dtype,
                })
            }
            _ => Err(self.error("persistent id is not a ('storage', type, key, ...) record")),
        }
    }

    fn run(&mut self) -> Result<Value, HstlError> {
        loop {
            let opcode = self.u8()?;
            if opcode == op::STOP {
                return self.pop();
            }
            let known = self.framing(opcode)?
                || self.containers(opcode)?
                || self.memo(opcode)?
                || self.scalars(opcode)?
                || self.objects(opcode)?
                || self.stack_items(opcode)?;
            if !known {
                self.pos -= 1;
                return Err(self.error(format!("unsupported pickle opcode 0x{opcode:02x}")));
            }
        }
    }

    /// Runs `opcode` when it is one of the protocol header and frames, which carry nothing the reader needs; `false` when it is not.
    fn framing(&mut self, opcode: u8) -> Result<bool, HstlError> {
        match opcode {
            op::PROTO => {
                let protocol = self.u8()?;
                if protocol > 5 {
                    return Err(self.error(format!("pickle protocol {protocol} is not supported")));
                }
            }
            op::FRAME => {
                self.u64()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Runs `opcode` when it is one of marks, empty and filled containers, and items set or appended; `false` when it is not.
    fn containers(&mut self, opcode: u8) -> Result<bool, HstlError> {
        match opcode {
            op::MARK => self.stack.push(StackItem::Mark),
            op::EMPTY_DICT => self.push_container(Value::Dict(Vec::new()), 0)?,
            op::EMPTY_LIST => self.push_container(Value::List(Vec::new()), 0)?,
            op::EMPTY_TUPLE => self.push_container(Value::Tuple(Vec::new()), 0)?,
            op::EMPTY_SET => self.push_container(Value::List(Vec::new()), 0)?,
            op::TUPLE => {
                let (items, inner) = self.pop_to_mark()?;
                self.push_container(Value::Tuple(items), inner)?;
            }
            op::FROZENSET => {
                let (items, inner) = self.pop_to_mark()?;
                self.push_container(Value::List(items), inner)?;
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = (opcode - op::TUPLE1 + 1) as usize;
                let mut items = Vec::with_capacity(n);
                let mut inner = 0;
                for _ in 0..n {
                    let (item, depth) = self.pop_with_depth()?;
                    inner = inner.max(depth);
                    items.push(item);
                }
                items.reverse();
                self.push_container(Value::Tuple(items), inner)?;
            }
            op::SETITEM => {
                let (v, v_depth) = self.pop_with_depth()?;
                let (k, k_depth) = self.pop_with_depth()?;
                self.set_items(vec![k, v], v_depth.max(k_depth))?;
            }
            op::SETITEMS => {
                let (items, inner) = self.pop_to_mark()?;
                self.set_items(items, inner)?;
            }
            op::APPEND => {
                let (v, depth) = self.pop_with_depth()?;
                self.append_items(vec![v], depth)?;
            }
            op::APPENDS | op::ADDITEMS => {
                let (items, inner) = self.pop_to_mark()?;
                self.append_items(items, inner)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Runs `opcode` when it is one of the memo: values stored and fetched again by index; `false` when it is not.
    fn memo(&mut self, opcode: u8) -> Result<bool, HstlError> {
        match opcode {
            op::BINPUT => {
                let index = self.u8()? as u32;
                self.memo_put(index)?;
            }
            op::LONG_BINPUT => {
                let index = self.u32()?;
                self.memo_put(index)?;
            }
            op::MEMOIZE => {
                let index = self.memo.len() as u32;
                self.memo_put(index)?;
            }
            op::BINGET => {
                let index = self.u8()? as u32;
                let (v, depth) = self.memo_get(index)?;
                self.stack.push(StackItem::Value(v, depth));
            }
            op::LONG_BINGET => {
                let index = self.u32()?;
                let (v, depth) = self.memo_get(index)?;
                self.stack.push(StackItem::Value(v, depth));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Runs `opcode` when it is one of strings, bytes, numbers, booleans and `None`; `false` when it is not.
    fn scalars(&mut self, opcode: u8) -> Result<bool, HstlError> {
        match opcode {
            op::BINUNICODE => {
                let n = self.u32()? as usize;
                let v = self.utf8(n)?;
                self.push(v);
            }
            op::SHORT_BINUNICODE => {
                let n = self.u8()? as usize;
                let v = self.utf8(n)?;
                self.push(v);
            }
            op::BINUNICODE8 => {
                let n = usize::try_from(self.u64()?).map_err(|_| self.error("string too long"))?;
                let v = self.utf8(n)?;
                self.push(v);
            }
            op::SHORT_BINSTRING => {
                let n = self.u8()? as usize;
                let v = self.take(n)?;
                self.push(Value::Str(String::from_utf8_lossy(v).into_owned()));
            }
            op::BINSTRING => {
                let n = self.u32()? as usize;
                let v = self.take(n)?;
                self.push(Value::Str(String::from_utf8_lossy(v).into_owned()));
            }
            op::BYTEARRAY8 => {
                let n = self.u64()?;
                let n = usize::try_from(n).map_err(|_| self.error("bytearray too large"))?;
                let raw = self.take(n)?.to_vec();
                self.push(Value::Bytes(raw));
            }
            op::SHORT_BINBYTES => {
                let n = self.u8()? as usize;
                let v = self.take(n)?.to_vec();
                self.push(Value::Bytes(v));
            }
            op::BINBYTES => {
                let n = self.u32()? as usize;
                let v = self.take(n)?.to_vec();
                self.push(Value::Bytes(v));
            }
            op::BININT => {
                let v = self.u32()? as i32;
                self.push(Value::Int(v as i64));
            }
            op::BININT1 => {
                let v = self.u8()?;
                self.push(Value::Int(v as i64));
            }
            op::BININT2 => {
                let v = self.u16()?;
                self.push(Value::Int(v as i64));
            }
            op::LONG1 => {
                let n = self.u8()? as usize;
                if n > 8 {
                    return Err(self.error("integer wider than 64 bits"));
                }
                let raw = self.take(n)?;
                let mut buf = if raw.last().is_some_and(|&b| b & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                buf[..n].copy_from_slice(raw);
                self.push(Value::Int(i64::from_le_bytes(buf)));
            }
            op::BINFLOAT => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.push(Value::Float(f64::from_be_bytes(a)));
            }
            op::NEWTRUE => self.push(Value::Bool(true)),
            op::NEWFALSE => self.push(Value::Bool(false)),
            op::NONE => self.push(Value::None),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Runs `opcode` when it is one of globals, calls, object construction and state, and persistent ids (tensor storages); `false` when it is not.
    fn objects(&mut self, opcode: u8) -> Result<bool, HstlError> {
        match opcode {
            op::GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                self.push(Value::Global { module, name });
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module, name) {
                    (Value::Str(module), Value::Str(name)) => {
                        self.push(Value::Global { module, name })
                    }
                    _ => return Err(self.error("STACK_GLOBAL needs two strings")),
                }
            }
            op::REDUCE => {
                let (args, args_depth) = self.pop_with_depth()?;
                let (callable, callable_depth) = self.pop_with_depth()?;
                let v = self.reduce(callable, args)?;
                self.push_container(v, args_depth.max(callable_depth))?;
            }
            op::NEWOBJ => {
                let (args, args_depth) = self.pop_with_depth()?;
                let (class, class_depth) = self.pop_with_depth()?;
                self.push_container(
                    Value::Object {
                        callable: Box::new(class),
                        args: Box::new(args),
                    },
                    args_depth.max(class_depth),
                )?;
            }
            op::BUILD => {
                // Only numpy arrays need their state; other objects' state (e.g. a state_dict's
                // `_metadata`) is not needed.
                let state = self.pop()?;
                if is_numpy_reconstruct(self.top()?) {
                    let array = self.numpy_array(state)?;
                    *self.top()? = array;
                }
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                let v = self.persistent_load(pid)?;
                self.push(v);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Runs `opcode` when it is one of dropping and duplicating stack items; `false` when it is not.
    fn stack_items(&mut self, opcode: u8) -> Result<bool, HstlError> {
        match opcode {
            op::POP => {
                self.stack.pop();
            }
            op::POP_MARK => {
                self.pop_to_mark()?;
            }
            op::DUP => {
                let (v, depth) = self.top_with_depth()?;
                let (v, depth) = (v.clone(), *depth);
                self.copy(&v)?;
                self.stack.push(StackItem::Value(v, depth));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_containers_and_scalars() {
        // pickle.dumps({'a': [1, 2.5, None, True], 'b': ('x', -3)}, protocol=2)
        let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03X\x01\x00\x00\x00xq\x04J\xfd\xff\xff\xff\x86q\x05u.";
        let v = parse(bytes).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::List(vec![
                Value::Int(1),
                Value::Float(2.5),
                Value::None,
                Value::Bool(true)
            ]))
        );
        assert_eq!(
            v.get("b"),
            Some(&Value::Tuple(vec![Value::Str("x".into()), Value::Int(-3)]))
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_it_can_overflow_the_stack() {
        let mut bytes = b"\x80\x02N".to_vec();
        bytes.extend(std::iter::repeat_n(0x85u8, 200_000));
        bytes.push(b'.');
        let error = parse(&bytes).unwrap_err().to_string();
        assert!(error.contains("nested more than 64 deep"), "{error}");
        let mut lists = b"\x80\x02".to_vec();
        lists.extend(std::iter::repeat_n(b']', 100));
        lists.extend(std::iter::repeat_n(b'a', 99));
        lists.push(b'.');
        assert!(parse(&lists).is_err(), "APPEND nests too");
    }

    #[test]
    fn copies_that_double_at_every_step_are_refused() {
        // x = []; then 40 times: x = (x, x), each through the memo. The budget is the real one's
        // mechanism at a size this test reaches in milliseconds (the fuzz target meets the real one).
        let mut bytes = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            bytes.extend_from_slice(b"0h\x00h\x00\x86q\x00");
        }
        bytes.push(b'.');
        let error = parse_with_copy_budget(&bytes, 1 << 12)
            .unwrap_err()
            .to_string();
        assert!(error.contains("copies more than 4096 units"), "{error}");
        let eight_doublings = [&bytes[..5 + 8 * 8], b"."].concat();
        assert!(parse_with_copy_budget(&eight_doublings, 1 << 12).is_ok());
    }

    #[test]
    fn truncated_pickle_is_an_error_not_a_panic() {
        let bytes: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00";
        let err = parse(bytes).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn unknown_opcode_is_named() {
        let err = parse(b"\x80\x02\xff").unwrap_err();
        assert!(err.to_string().contains("0xff"), "{err}");
    }

    #[test]
    fn long1_decodes_negative_and_wide_integers() {
        // pickle.dumps(-300000000000, protocol=2) and 2**40
        assert_eq!(
            parse(b"\x80\x02\x8a\x05\x00H\x9b&\xba.").unwrap(),
            Value::Int(-300000000000)
        );
        assert_eq!(
            parse(b"\x80\x02\x8a\x06\x00\x00\x00\x00\x00\x01.").unwrap(),
            Value::Int(1 << 40)
        );
    }

    /// `pickle.dumps(numpy.array([[[1, 2], [3, 4]]], numpy.uint8), protocol=P)` as numpy 2 writes it.
    const NUMPY_PROTOCOL_4: &[u8] = b"\x80\x04\x95\x91\x00\x00\x00\x00\x00\x00\x00\x8c\x16\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6d\x75\x6c\x74\x69\x61\x72\x72\x61\x79\x94\x8c\x0c\x5f\x72\x65\x63\x6f\x6e\x73\x74\x72\x75\x63\x74\x94\x93\x94\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x07\x6e\x64\x61\x72\x72\x61\x79\x94\x93\x94\x4b\x00\x85\x94\x43\x01\x62\x94\x87\x94\x52\x94\x28\x4b\x01\x4b\x01\x4b\x02\x4b\x02\x87\x94\x68\x03\x8c\x05\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x75\x31\x94\x89\x88\x87\x94\x52\x94\x28\x4b\x03\x8c\x01\x7c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x94\x62\x89\x43\x04\x01\x02\x03\x04\x94\x74\x94\x62\x2e";
    const NUMPY_PROTOCOL_5: &[u8] = b"\x80\x05\x95\x7c\x00\x00\x00\x00\x00\x00\x00\x8c\x13\x6e\x75\x6d\x70\x79\x2e\x5f\x63\x6f\x72\x65\x2e\x6e\x75\x6d\x65\x72\x69\x63\x94\x8c\x0b\x5f\x66\x72\x6f\x6d\x62\x75\x66\x66\x65\x72\x94\x93\x94\x28\x96\x04\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04\x94\x8c\x05\x6e\x75\x6d\x70\x79\x94\x8c\x05\x64\x74\x79\x70\x65\x94\x93\x94\x8c\x02\x75\x31\x94\x89\x88\x87\x94\x52\x94\x28\x4b\x03\x8c\x01\x7c\x94\x4e\x4e\x4e\x4a\xff\xff\xff\xff\x4a\xff\xff\xff\xff\x4b\x00\x74\x94\x62\x4b\x01\x4b\x02\x4b\x02\x87\x94\x8c\x01\x43\x94\x74\x94\x52\x94\x2e";

    #[test]
    fn numpy_arrays_are_rebuilt_from_both_pickle_encodings() {
        for bytes in [NUMPY_PROTOCOL_4, NUMPY_PROTOCOL_5] {
            assert_eq!(
                parse(bytes).unwrap(),
                Value::NumpyArray {
                    dtype: "u1".into(),
                    shape: vec![1, 2, 2],
                    fortran_order: false,
                    data: vec![1, 2, 3, 4],
                }
            );
        }
        assert!(parse(&NUMPY_PROTOCOL_4[..NUMPY_PROTOCOL_4.len() - 8]).is_err());
    }
}
