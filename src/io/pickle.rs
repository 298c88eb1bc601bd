//! A reader for the Python pickles inside PyTorch checkpoints (`data.pkl` of a `torch.save`
//! zip), protocols 2 to 5. Nothing is ever called: a global is kept as its name and a call
//! as an [`Value::Object`], except the few constructors a state dict is made of
//! (`OrderedDict`, `_rebuild_tensor_v2`, `_rebuild_parameter`), which become dicts and
//! [`TensorRef`]s. So a checkpoint with arbitrary Python objects in it (Lightning's
//! hyper-parameters, callbacks) reads safely, where `torch.load(weights_only=False)` would
//! run them.

/// A tensor as the pickle describes it: where its elements lie in a storage record.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    /// The storage's record name (`data/<key>`) and PyTorch's storage class, e.g.
    /// `FloatStorage`.
    pub key: String,
    pub storage: String,
    /// In elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// In insertion order, as Python's dicts.
    Dict(Vec<(Value, Value)>),
    /// A `module.name` that was not called.
    Global(String, String),
    /// A call of `class` with `args`, and the state `BUILD` gave it.
    Object {
        class: (String, String),
        args: Vec<Value>,
        state: Option<Box<Value>>,
    },
    /// A persistent id: a storage record.
    Storage {
        key: String,
        class: String,
    },
    Tensor(TensorRef),
}

impl Value {
    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// How deep values may nest: a state dict nests a few levels; a hostile pickle could nest a
/// value a million deep, which the recursive drop (and any walk) of it would overflow the
/// stack on.
const MAX_DEPTH: usize = 100;

/// Values the memo and DUP may copy in all: Python shares the object where this reader copies
/// it, so a few bytes that copy a copy again and again would otherwise build a value that
/// grows quadratically or doubles at each step.
const MAX_COPIED: usize = 1 << 22;

/// Stack entries: values, with how deep they nest (0 for a scalar), and MARKs.
enum Entry {
    Mark,
    Value(Value, usize),
}

struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Entry>,
    memo: std::collections::HashMap<u32, (Value, usize)>,
    /// Values copied so far.
    copied: usize,
}

/// The values in `v`, itself included.
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(count).sum(),
        Value::Dict(items) => items.iter().map(|(k, v)| count(k) + count(v)).sum(),
        Value::Object { args, state, .. } => {
            args.iter().map(count).sum::<usize>() + state.as_deref().map_or(0, count)
        }
        _ => 0,
    }
}

/// `depth`, if values may nest that deep.
fn within_depth(depth: usize) -> Result<usize, String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nest deeper than {MAX_DEPTH}"));
    }
    Ok(depth)
}

/// How deep a value made of `items` nests.
fn depth_over<'v>(items: impl IntoIterator<Item = &'v usize>) -> usize {
    1 + items.into_iter().copied().max().unwrap_or(0)
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("the pickle ends in the middle of an instruction")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn len(&mut self, n: u64) -> Result<usize, String> {
        usize::try_from(n).map_err(|_| "a length too large".to_string())
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a string is not UTF-8".to_string())
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("an unterminated line")?;
        let line = self.text(end)?;
        self.at += 1;
        Ok(line)
    }

    /// A scalar.
    fn push(&mut self, v: Value) {
        self.stack.push(Entry::Value(v, 0));
    }

    /// A value that nests `depth` deep.
    fn push_nested(&mut self, v: Value, depth: usize) -> Result<(), String> {
        self.stack.push(Entry::Value(v, within_depth(depth)?));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.pop_nested().map(|(v, _)| v)
    }

    fn pop_nested(&mut self) -> Result<(Value, usize), String> {
        match self.stack.pop() {
            Some(Entry::Value(v, depth)) => Ok((v, depth)),
            Some(Entry::Mark) => Err("a MARK where a value was expected".into()),
            None => Err("the stack is empty".into()),
        }
    }

    fn top(&mut self) -> Result<(&mut Value, &mut usize), String> {
        match self.stack.last_mut() {
            Some(Entry::Value(v, depth)) => Ok((v, depth)),
            _ => Err("no value on the stack".into()),
        }
    }

    /// Counts `values` more copied against [`MAX_COPIED`], before they are copied.
    fn charge(&mut self, values: usize) -> Result<(), String> {
        self.copied = self.copied.saturating_add(values);
        if self.copied > MAX_COPIED {
            return Err(format!(
                "the pickle copies more than {MAX_COPIED} values through its memo"
            ));
        }
        Ok(())
    }

    /// A copy of the top of the stack.
    fn copy_top(&mut self) -> Result<(Value, usize), String> {
        let values = count(self.top()?.0);
        self.charge(values)?;
        let (v, depth) = self.top()?;
        Ok((v.clone(), *depth))
    }

    /// The values above the topmost MARK, which is removed, and how deep they nest.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, usize), String> {
        let mark = self
            .stack
            .iter()
            .rposition(|e| matches!(e, Entry::Mark))
            .ok_or("no MARK on the stack")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        let mut depth = 0;
        let values = items
            .into_iter()
            .map(|e| match e {
                Entry::Value(v, d) => {
                    depth = depth.max(d);
                    v
                }
                Entry::Mark => unreachable!("the topmost mark"),
            })
            .collect();
        Ok((values, depth))
    }

    fn memo_get(&mut self, i: u32) -> Result<(), String> {
        let (v, _) = self
            .memo
            .get(&i)
            .ok_or_else(|| format!("memo {i} is empty"))?;
        self.charge(count(v))?;
        let (v, depth) = self.memo[&i].clone();
        self.push_nested(v, depth)
    }

    fn memo_put(&mut self, i: u32) -> Result<(), String> {
        let entry = self.copy_top()?;
        self.memo.insert(i, entry);
        Ok(())
    }

    /// Raises the depth of the value on top of the stack to hold values `inner` deep.
    fn deepen_top(&mut self, inner: usize) -> Result<(), String> {
        let (_, depth) = self.top()?;
        *depth = within_depth((*depth).max(inner + 1))?;
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>, depth: usize) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return Err("SETITEMS with an odd number of values".into());
        }
        self.deepen_top(depth)?;
        let (Value::Dict(dict), _) = self.top()? else {
            return Err("SETITEM on something that is not a dict".into());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match dict.iter_mut().find(|(old, _)| *old == k) {
                Some(slot) => slot.1 = v,
                None => dict.push((k, v)),
            }
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>, depth: usize) -> Result<(), String> {
        self.deepen_top(depth)?;
        match self.top()?.0 {
            Value::List(list) => list.extend(items),
            Value::Object { args, .. } => args.extend(items),
            _ => return Err("APPEND on something that is not a list".into()),
        }
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let code = self.u8()?;
            match code {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Entry::Mark),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let (v, depth) = self.copy_top()?;
                    self.push_nested(v, depth)?;
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if code == 0x8a {
                        self.u8()? as u64
                    } else {
                        self.u32()? as u64
                    };
                    let n = self.len(n)?;
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err("an integer wider than 64 bits".into());
                    }
                    let mut wide = [if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                        0xff
                    } else {
                        0
                    }; 8];
                    wide[..n].copy_from_slice(bytes);
                    self.push(Value::Int(i64::from_le_bytes(wide)));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(v));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match code {
                        b'X' => self.u32()? as u64,
                        0x8c => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = self.len(n)?;
                    let s = self.text(n)?;
                    self.push(Value::Str(s));
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e => {
                    let n = match code {
                        b'U' | b'C' => self.u8()? as u64,
                        0x8e => self.u64()?,
                        _ => self.u32()? as u64,
                    };
                    let n = self.len(n)?;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b));
                }
                b')' => self.push_nested(Value::Tuple(Vec::new()), 1)?,
                b't' => {
                    let (items, depth) = self.pop_mark()?;
                    self.push_nested(Value::Tuple(items), depth + 1)?;
                }
                0x85..=0x87 => {
                    let n = (code - 0x84) as usize;
                    let mut items: Vec<(Value, usize)> = (0..n)
                        .map(|_| self.pop_nested())
                        .collect::<Result<_, _>>()?;
                    items.reverse();
                    let depth = depth_over(items.iter().map(|(_, d)| d));
                    let items = items.into_iter().map(|(v, _)| v).collect();
                    self.push_nested(Value::Tuple(items), depth)?;
                }
                b']' | 0x8f => self.push_nested(Value::List(Vec::new()), 1)?,
                b'l' | 0x91 => {
                    let (items, depth) = self.pop_mark()?;
                    self.push_nested(Value::List(items), depth + 1)?;
                }
                b'a' => {
                    let (v, depth) = self.pop_nested()?;
                    self.append(vec![v], depth)?;
                }
                b'e' | 0x90 => {
                    let (items, depth) = self.pop_mark()?;
                    self.append(items, depth)?;
                }
                b'}' => self.push_nested(Value::Dict(Vec::new()), 1)?,
                b'd' => {
                    let (items, depth) = self.pop_mark()?;
                    self.push_nested(Value::Dict(Vec::new()), 1)?;
                    self.set_items(items, depth)?;
                }
                b's' => {
                    let (v, dv) = self.pop_nested()?;
                    let (k, dk) = self.pop_nested()?;
                    self.set_items(vec![k, v], dv.max(dk))?;
                }
                b'u' => {
                    let (items, depth) = self.pop_mark()?;
                    self.set_items(items, depth)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n)),
                        _ => return Err("STACK_GLOBAL without two strings".into()),
                    }
                }
                b'R' | 0x81 | 0x92 => {
                    if code == 0x92 {
                        self.pop()?;
                    }
                    let (args, depth) = match self.pop_nested()? {
                        (Value::Tuple(args), depth) => (args, depth),
                        _ => return Err("a call whose arguments are not a tuple".into()),
                    };
                    let callable = self.pop()?;
                    let v = call(callable, args)?;
                    self.push_nested(v, depth + 1)?;
                }
                b'b' => {
                    let (state, depth) = self.pop_nested()?;
                    match self.top()?.0 {
                        Value::Dict(_) => {
                            if let Value::Dict(items) = state {
                                let flat = items.into_iter().flat_map(|(k, v)| [k, v]).collect();
                                self.set_items(flat, depth)?;
                            }
                        }
                        Value::Object { .. } => {
                            self.deepen_top(depth)?;
                            if let (Value::Object { state: slot, .. }, _) = self.top()? {
                                *slot = Some(Box::new(state));
                            }
                        }
                        // A tensor's or parameter's extra state: nothing a state dict needs.
                        _ => {}
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push_nested(persistent(pid)?, 1)?;
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {} is not supported",
                        self.at - 1
                    ));
                }
            }
        }
    }
}

/// What calling `callable` with `args` stands for.
fn call(callable: Value, args: Vec<Value>) -> Result<Value, String> {
    let Value::Global(module, name) = callable else {
        return Err("a call of something that is not a global".into());
    };
    Ok(match (module.as_str(), name.as_str(), args.as_slice()) {
        ("collections", "OrderedDict", []) => Value::Dict(Vec::new()),
        (
            "torch._utils",
            "_rebuild_tensor_v2" | "_rebuild_tensor",
            [storage, offset, shape, stride, ..],
        ) => {
            let Value::Storage { key, class } = storage else {
                return Err("a tensor without a storage record".into());
            };
            let ints = |v: &Value| -> Result<Vec<usize>, String> {
                match v {
                    Value::Tuple(items) => items
                        .iter()
                        .map(|i| match i {
                            Value::Int(n) if *n >= 0 => Ok(*n as usize),
                            _ => Err("a tensor size or stride is not a natural number".to_string()),
                        })
                        .collect(),
                    _ => Err("a tensor's size or stride is not a tuple".into()),
                }
            };
            let Value::Int(offset) = offset else {
                return Err("a tensor's offset is not an integer".into());
            };
            Value::Tensor(TensorRef {
                key: key.clone(),
                storage: class.clone(),
                offset: usize::try_from(*offset).map_err(|_| "a negative tensor offset")?,
                shape: ints(shape)?,
                stride: ints(stride)?,
            })
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state", [tensor, ..]) => {
            tensor.clone()
        }
        _ => Value::Object {
            class: (module, name),
            args,
            state: None,
        },
    })
}

/// `('storage', storage class, key, location, size)`: a record of the zip.
fn persistent(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("a persistent id that is not a tuple".into());
    };
    match items.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, class),
            Value::Str(key),
            ..,
        ] if kind == "storage" => Ok(Value::Storage {
            key: key.clone(),
            class: class.clone(),
        }),
        _ => Err(format!("a persistent id lim does not know: {items:?}")),
    }
}

/// The object a pickle holds.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    Machine {
        bytes,
        at: 0,
        stack: Vec::new(),
        memo: Default::default(),
        copied: 0,
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_4() {
        // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': ('x', 300, -70000, 2**40, -2**40),
        //               'c': collections.OrderedDict(k=b'\x01')}, protocol=4), Python 3.11.
        let bytes = b"\x80\x04\x95p\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88e\x8c\x01b\x94(\x8c\x01x\x94M,\x01J\x90\xee\xfe\xff\x8a\x06\x00\x00\x00\x00\x00\x01\x8a\x06\x00\x00\x00\x00\x00\xfft\x94\x8c\x01c\x94\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01k\x94C\x01\x01\x94su.";
        let v = parse(bytes).unwrap();
        let s = |t: &str| Value::Str(t.into());
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    s("a"),
                    Value::List(vec![
                        Value::Int(1),
                        Value::Int(-2),
                        Value::Float(3.5),
                        Value::None,
                        Value::Bool(true)
                    ])
                ),
                (
                    s("b"),
                    Value::Tuple(vec![
                        s("x"),
                        Value::Int(300),
                        Value::Int(-70000),
                        Value::Int(1 << 40),
                        Value::Int(-(1 << 40))
                    ])
                ),
                (s("c"), Value::Dict(vec![(s("k"), Value::Bytes(vec![1]))])),
            ])
        );
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(
            parse(b"\x80\x02}q\x00(")
                .unwrap_err()
                .contains("ends in the middle")
        );
        assert!(parse(b"\x80\x02I1\n.").unwrap_err().contains("opcode 0x49"));
        assert!(parse(b"\x80\x02h\x05.").unwrap_err().contains("memo 5"));
        assert!(parse(b".").unwrap_err().contains("empty"));
    }

    /// A value copied through the memo doubles at each step (a "billion laughs"): refused once
    /// the copies pass their bound, long before memory runs out.
    #[test]
    fn copies_that_double_are_refused() {
        let mut bytes = b"\x80\x04N\x94".to_vec();
        for i in 0..64u8 {
            bytes.extend_from_slice(&[b'h', i, b'h', i, 0x86, 0x94, b'0']);
        }
        bytes.extend_from_slice(b"h\x40.");
        let err = parse(&bytes).unwrap_err();
        assert!(err.contains("copies more than 4194304 values"), "{err}");
    }

    /// A million nested tuples: refused at the depth bound, not a stack overflow.
    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = b"\x80\x04N".to_vec();
        bytes.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        bytes.push(b'.');
        let err = parse(&bytes).unwrap_err();
        assert!(err.contains("nest deeper than 100"), "{err}");
        let mut lists = b"\x80\x04".to_vec();
        lists.extend(std::iter::repeat_n([b']', b'('], 150).flatten());
        lists.extend(std::iter::repeat_n(b'e', 150));
        assert!(parse(&lists).unwrap_err().contains("nest deeper than 100"));
    }
}
