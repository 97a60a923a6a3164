//! The machine that runs a pickle's opcodes: a stack, marks, a memo, and each group of opcodes
//! in a method of its own.

use std::collections::HashMap;

use super::*;

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

pub(super) struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<StackItem>,
    memo: HashMap<u32, (Value, u32)>,
    copied_cost: usize,
    copy_budget: usize,
}

impl<'a> Machine<'a> {
    /// A machine at the start of `bytes`, allowed `copy_budget` of copying.
    pub(super) fn new(bytes: &'a [u8], copy_budget: usize) -> Self {
        Machine {
            bytes,
            pos: 0,
            stack: Vec::new(),
            memo: HashMap::new(),
            copied_cost: 0,
            copy_budget,
        }
    }

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

    pub(super) fn run(&mut self) -> Result<Value, HstlError> {
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
