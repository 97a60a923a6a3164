//! A pickle virtual machine for what `torch.save` writes.
//!
//! It understands the opcodes of pickle protocols 2 to 5 that appear in PyTorch checkpoints and
//! never executes anything: a `GLOBAL` becomes a name, a `REDUCE` becomes an [`Value::Object`] that
//! records the callable and its arguments. Only the two tensor rebuild functions are interpreted,
//! because they are what a checkpoint is made of.
//!
//! Memo entries are copies, not shared references; PyTorch checkpoints never mutate a container
//! after referring to it again, so the difference cannot be observed in them.

use crate::error::HstlError;

mod machine;

use machine::Machine;

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

/// Containers nested deeper than this are refused: a state dict nests a few levels, and dropping or
/// cloning a value walks its nesting recursively, so a crafted pickle could overflow the stack.
pub const MAX_NESTING: u32 = 64;
/// Values copied from the memo or duplicated, counted in nodes plus bytes/16: a real checkpoint
/// copies a few thousand, a crafted pickle could double a value at every opcode.
pub const MAX_COPIED_COST: usize = 1 << 24;

/// Parses one pickle and returns the object it builds.
pub fn parse(bytes: &[u8]) -> Result<Value, HstlError> {
    parse_with_copy_budget(bytes, MAX_COPIED_COST)
}

/// [`parse`] with another copy budget than [`MAX_COPIED_COST`] (tests reach a small one quickly).
fn parse_with_copy_budget(bytes: &[u8], copy_budget: usize) -> Result<Value, HstlError> {
    Machine::new(bytes, copy_budget).run()
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
