//! A restricted unpickler for PyTorch checkpoints.
//!
//! It understands only the opcodes `torch.save` emits for plain tensor data
//! (protocols 2–5) and only these callables: `torch._utils._rebuild_tensor_v2`,
//! `torch._utils._rebuild_parameter`, `collections.OrderedDict` and the typed
//! `torch.*Storage` classes. Any other global (`os.system`, `builtins.eval`,
//! a model class…) is refused when it is *named*, before anything could be
//! called; nothing is ever executed. Objects are plain data ([`Value`]).

use std::collections::HashMap;
use std::rc::Rc;

use anyhow::{bail, Context, Result};

/// Element type named by a `torch.*Storage` global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageDtype {
    F32,
    F16,
    BF16,
    /// Known to torch, but not a prompt dtype: refused with its name later.
    Other(&'static str, usize),
}

impl StorageDtype {
    pub fn size(self) -> usize {
        match self {
            StorageDtype::F32 => 4,
            StorageDtype::F16 | StorageDtype::BF16 => 2,
            StorageDtype::Other(_, size) => size,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StorageDtype::F32 => "float32",
            StorageDtype::F16 => "float16",
            StorageDtype::BF16 => "bfloat16",
            StorageDtype::Other(name, _) => name,
        }
    }

    fn from_class(class: &str) -> Option<StorageDtype> {
        Some(match class {
            "FloatStorage" => StorageDtype::F32,
            "HalfStorage" => StorageDtype::F16,
            "BFloat16Storage" => StorageDtype::BF16,
            "DoubleStorage" => StorageDtype::Other("float64", 8),
            "LongStorage" => StorageDtype::Other("int64", 8),
            "IntStorage" => StorageDtype::Other("int32", 4),
            "ShortStorage" => StorageDtype::Other("int16", 2),
            "CharStorage" => StorageDtype::Other("int8", 1),
            "ByteStorage" => StorageDtype::Other("uint8", 1),
            "BoolStorage" => StorageDtype::Other("bool", 1),
            _ => return None,
        })
    }

    /// The `torch.*Storage` class name, for writing.
    pub fn class(self) -> &'static str {
        match self {
            StorageDtype::F32 => "FloatStorage",
            StorageDtype::F16 => "HalfStorage",
            StorageDtype::BF16 => "BFloat16Storage",
            StorageDtype::Other(..) => "UnsupportedStorage",
        }
    }
}

/// The only callables a checkpoint may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    Storage(StorageDtype),
}

impl Global {
    fn lookup(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch", class) => StorageDtype::from_class(class).map(Global::Storage),
            _ => None,
        }
    }
}

/// A storage reference from a persistent id: `('storage', cls, key, location, numel)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub dtype: StorageDtype,
    /// Record name under `<archive>/data/`.
    pub key: String,
    /// Number of elements in the storage.
    pub numel: usize,
}

/// A tensor view on a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Plain data produced by the unpickler.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<Vec<Value>>),
    Dict(Rc<Vec<(Value, Value)>>),
    Global(Global),
    Storage(StorageRef),
    Tensor(Rc<TensorRef>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn as_usize(&self, what: &str) -> Result<usize> {
        match self {
            Value::Int(i) => usize::try_from(*i).with_context(|| format!("{what} is negative ({i})")),
            other => bail!("{what} should be an int, found {}", other.kind()),
        }
    }

    fn as_usize_tuple(&self, what: &str) -> Result<Vec<usize>> {
        match self {
            Value::Tuple(items) | Value::List(items) => items.iter().map(|v| v.as_usize(what)).collect(),
            other => bail!("{what} should be a tuple of ints, found {}", other.kind()),
        }
    }
}

/// Unpickling stops with an error past this many stack/memo entries; a
/// checkpoint of a prompt needs a few dozen.
const MAX_ITEMS: usize = 1_000_000;
/// Longest string or bytes object accepted.
const MAX_STRING: usize = 16 * 1024 * 1024;

/// Unpickles `data` into plain [`Value`]s, refusing anything but tensor data.
pub fn unpickle(data: &[u8]) -> Result<Value> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new() };
    m.run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => bail!("the pickle is truncated (needed {n} bytes at offset {})", self.pos),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let end = rest.iter().position(|&b| b == b'\n').context("the pickle is truncated (unterminated GLOBAL)")?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }
    fn sized(&mut self, len: u64) -> Result<&[u8]> {
        let len =
            usize::try_from(len).ok().filter(|&l| l <= MAX_STRING).context("a string in the pickle is too long")?;
        self.take(len)
    }
    fn text(&mut self, len: u64) -> Result<String> {
        let bytes = self.sized(len)?;
        String::from_utf8(bytes.to_vec()).context("a string in the pickle is not valid UTF-8")
    }

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_ITEMS {
            bail!("the pickle builds more than {MAX_ITEMS} objects; not a prompt checkpoint");
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!("malformed pickle: pop across a MARK at offset {}", self.pos);
        }
        self.stack.pop().with_context(|| format!("malformed pickle: empty stack at offset {}", self.pos))
    }
    fn top(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        self.stack.last_mut().with_context(|| format!("malformed pickle: empty stack at offset {pos}"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().with_context(|| format!("malformed pickle: no MARK at offset {}", self.pos))?;
        if mark > self.stack.len() {
            bail!("malformed pickle: MARK beyond the stack at offset {}", self.pos);
        }
        Ok(self.stack.split_off(mark))
    }
    fn memo_put(&mut self, key: u32) -> Result<()> {
        if self.memo.len() >= MAX_ITEMS {
            bail!("the pickle memoises more than {MAX_ITEMS} objects; not a prompt checkpoint");
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn memo_get(&mut self, key: u32) -> Result<()> {
        let v = self.memo.get(&key).cloned().with_context(|| format!("malformed pickle: memo key {key} is unset"))?;
        self.push(v)
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        match Global::lookup(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None => bail!(
                "refusing to load: the pickle references `{module}.{name}`, which is not plain tensor data \
                 (only torch tensor-rebuild functions, torch storages and OrderedDict are allowed; \
                 nothing was executed)"
            ),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        bail!("pickle protocol {proto} is not supported (2 to 5 are)");
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a size hint only.
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b')' => self.push(Value::Tuple(Rc::new(Vec::new())))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                b']' => self.push(Value::List(Rc::new(Vec::new())))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(items)))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b'}' => self.push(Value::Dict(Rc::new(Vec::new())))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.push(Value::Dict(Rc::new(pairs)))?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.extend_dict(pairs)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Int(long_from_le(&bytes)?))?;
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?;
                }
                b'X' => {
                    let len = u64::from(self.u32()?);
                    let s = self.text(len)?;
                    self.push(Value::Str(s))?;
                }
                0x8c => {
                    let len = u64::from(self.u8()?);
                    let s = self.text(len)?;
                    self.push(Value::Str(s))?;
                }
                0x8d => {
                    let len = self.u64()?;
                    let s = self.text(len)?;
                    self.push(Value::Str(s))?;
                }
                b'C' => {
                    let len = u64::from(self.u8()?);
                    let b = self.sized(len)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b'B' => {
                    let len = u64::from(self.u32()?);
                    let b = self.sized(len)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b'q' => {
                    let k = u32::from(self.u8()?);
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).context("memo overflow")?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = u32::from(self.u8()?);
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(&module, &name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.global(&m, &n)?,
                        _ => bail!("malformed pickle: STACK_GLOBAL needs two strings (offset {at})"),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.push(v)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(pid)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD sets attributes; on an OrderedDict that is
                    // state_dict `_metadata`, which carries no tensor data.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) => {}
                        other => bail!(
                            "refusing to load: the pickle sets the state of a {} object (offset {at}); \
                             only plain tensor data is accepted",
                            other.kind()
                        ),
                    }
                }
                other => bail!(
                    "refusing to load: pickle opcode 0x{other:02x} at offset {at} is not used by plain tensor \
                     checkpoints (custom objects are not supported)"
                ),
            }
        }
    }

    fn extend_list(&mut self, items: Vec<Value>) -> Result<()> {
        match self.top()? {
            Value::List(list) => {
                Rc::make_mut(list).extend(items);
                Ok(())
            }
            other => bail!("malformed pickle: APPEND to a {}", other.kind()),
        }
    }

    fn extend_dict(&mut self, new: Vec<(Value, Value)>) -> Result<()> {
        match self.top()? {
            Value::Dict(dict) => {
                let dict = Rc::make_mut(dict);
                for (k, v) in new {
                    match dict.iter_mut().find(|(existing, _)| *existing == k) {
                        Some(slot) => slot.1 = v,
                        None => dict.push((k, v)),
                    }
                }
                Ok(())
            }
            other => bail!("malformed pickle: SETITEM on a {}", other.kind()),
        }
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("malformed pickle: a dict needs key/value pairs");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn long_from_le(bytes: &[u8]) -> Result<i64> {
    if bytes.len() > 8 {
        bail!("an integer in the pickle is wider than 64 bits");
    }
    if bytes.is_empty() {
        return Ok(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut a = if negative { [0xffu8; 8] } else { [0u8; 8] };
    a[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(a))
}

fn reduce(callable: Value, args: Value) -> Result<Value> {
    let Value::Global(global) = callable else {
        bail!(
            "refusing to load: the pickle calls a {} object; only tensor-rebuild functions are allowed",
            callable.kind()
        );
    };
    let Value::Tuple(args) = args else {
        bail!("malformed pickle: call arguments are a {}, not a tuple", args.kind());
    };
    match global {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Rc::new(Vec::new()))),
        Global::OrderedDict => bail!("refusing to load: OrderedDict is called with arguments"),
        Global::RebuildTensorV2 => rebuild_tensor(&args),
        Global::RebuildParameter => match args.first() {
            Some(t @ Value::Tensor(_)) => Ok(t.clone()),
            _ => bail!("malformed pickle: _rebuild_parameter without a tensor"),
        },
        Global::Storage(dtype) => {
            bail!("refusing to load: the pickle constructs a torch {} storage directly; only persistent storages are allowed", dtype.name())
        }
    }
}

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
fn rebuild_tensor(args: &[Value]) -> Result<Value> {
    if args.len() < 4 {
        bail!("malformed pickle: _rebuild_tensor_v2 needs at least 4 arguments, got {}", args.len());
    }
    let Value::Storage(storage) = &args[0] else {
        bail!("malformed pickle: _rebuild_tensor_v2's first argument is a {}, not a storage", args[0].kind());
    };
    let offset = args[1].as_usize("storage offset")?;
    let shape = args[2].as_usize_tuple("tensor size")?;
    let stride = args[3].as_usize_tuple("tensor stride")?;
    if shape.len() != stride.len() {
        bail!("malformed tensor: size {shape:?} and stride {stride:?} have different ranks");
    }
    Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
}

fn persistent_load(pid: Value) -> Result<Value> {
    let Value::Tuple(items) = &pid else {
        bail!("malformed pickle: persistent id is a {}, not a tuple", pid.kind());
    };
    match items.as_slice() {
        [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), numel]
            if tag == "storage" =>
        {
            let numel = numel.as_usize("storage size")?;
            Ok(Value::Storage(StorageRef { dtype: *dtype, key: key.clone(), numel }))
        }
        _ => bail!("refusing to load: unsupported persistent id (expected a torch storage reference)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_os_system_before_calling_it() {
        // cos\nsystem\n(S'echo pwned'\ntR.
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
        let err = format!("{:#}", unpickle(evil).unwrap_err());
        assert!(err.contains("`os.system`"), "{err}");
        assert!(err.contains("nothing was executed"), "{err}");
    }

    #[test]
    fn refuses_stack_global_eval_and_unknown_opcodes() {
        let evil = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.";
        let err = format!("{:#}", unpickle(evil).unwrap_err());
        assert!(err.contains("`builtins.eval`"), "{err}");
        // INST opcode (protocol 0 call).
        let err = format!("{:#}", unpickle(b"(ios\nsystem\n.").unwrap_err());
        assert!(err.contains("opcode 0x69"), "{err}");
    }

    #[test]
    fn reads_a_small_dict() {
        // {'a': 1, 'b': [True, None]}
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00b]q\x01(\x88Neu.";
        let v = unpickle(p).unwrap();
        let Value::Dict(d) = v else { panic!("not a dict") };
        assert_eq!(d[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(d[1].1, Value::List(Rc::new(vec![Value::Bool(true), Value::None])));
    }

    #[test]
    fn damaged_pickles_fail_cleanly() {
        // Every truncation and every single-byte corruption of a real
        // tensor pickle must give Ok or an error, never a panic or a hang.
        let good = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nq\x00((X\x07\x00\x00\x00storageq\x01ctorch\nFloatStorage\nq\x02X\x01\x00\x00\x000q\x03X\x03\x00\x00\x00cpuq\x04K\x06tq\x05QK\x00K\x02K\x03\x86q\x06K\x03K\x01\x86q\x07\x89ccollections\nOrderedDict\nq\x08)Rq\ttq\nRq\x0b.";
        assert!(matches!(unpickle(good).unwrap(), Value::Tensor(_)));
        for n in 0..good.len() {
            assert!(unpickle(&good[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        for i in 0..good.len() {
            for b in [0x00, 0x2e, 0x28, 0x52, 0x68, 0x71, 0x93, 0xff] {
                let mut bad = good.to_vec();
                bad[i] = b;
                let _ = unpickle(&bad);
            }
        }
    }

    #[test]
    fn long1_is_signed() {
        assert_eq!(long_from_le(&[0xff]).unwrap(), -1);
        assert_eq!(long_from_le(&[0x00, 0x01]).unwrap(), 256);
    }
}
