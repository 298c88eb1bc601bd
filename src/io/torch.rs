//! Writing PyTorch's checkpoint format: the zip file `torch.save` writes (a pickle of the
//! object, each tensor's storage as its own stored record), restricted to what
//! `torch.load(path, weights_only=True)` accepts: dicts, strings, and float32 / int64
//! tensors. This is how the paper's downstream notebooks take a pre-trained backbone
//! (`{"state_dict": {"model.conv1.weight": ...}}`, less-is-more.md §5.2).

use std::io::Write;
use std::path::Path;

use super::IoError;

/// A tensor's element type.
#[derive(Clone, Copy)]
pub enum Storage {
    F32,
    I64,
}

impl Storage {
    /// PyTorch's storage class, and the bytes of an element.
    fn class_and_size(self) -> (&'static str, usize) {
        match self {
            Storage::F32 => ("FloatStorage", 4),
            Storage::I64 => ("LongStorage", 8),
        }
    }
}

/// One named tensor: its elements row-major, little-endian, as safetensors holds them and as
/// PyTorch's records do.
pub struct Named<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub storage: Storage,
    pub data: &'a [u8],
}

/// Python pickle (protocol 2) opcodes lim writes.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const SETITEMS: u8 = b'u';
    pub const SETITEM: u8 = b's';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const LONG1: u8 = 0x8a;
    pub const NEWFALSE: u8 = 0x89;
    pub const BINPERSID: u8 = b'Q';
    pub const STOP: u8 = b'.';
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, code: u8) {
        self.0.push(code);
    }

    fn string(&mut self, s: &str) {
        self.op(op::BINUNICODE);
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        match i32::try_from(v) {
            Ok(small) => {
                self.op(op::BININT);
                self.0.extend(small.to_le_bytes());
            }
            Err(_) => {
                // Python's long, little-endian two's complement in 8 bytes.
                self.op(op::LONG1);
                self.0.push(8);
                self.0.extend((v as i64).to_le_bytes());
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.op(op::GLOBAL);
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn tuple_of(&mut self, values: &[usize]) {
        self.op(op::MARK);
        for &v in values {
            self.int(v);
        }
        self.op(op::TUPLE);
    }

    /// `collections.OrderedDict()`.
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.op(op::EMPTY_TUPLE);
        self.op(op::REDUCE);
    }

    /// `torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict())`,
    /// the storage being persistent record `key`.
    fn tensor(&mut self, key: usize, t: &Named) {
        let (storage, size) = t.storage.class_and_size();
        let numel = t.data.len() / size;
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.op(op::MARK);
        self.op(op::MARK);
        self.string("storage");
        self.global("torch", storage);
        self.string(&key.to_string());
        self.string("cpu");
        self.int(numel);
        self.op(op::TUPLE);
        self.op(op::BINPERSID);
        self.int(0);
        self.tuple_of(t.shape);
        let mut stride = vec![1; t.shape.len()];
        for i in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * t.shape[i + 1];
        }
        self.tuple_of(&stride);
        self.op(op::NEWFALSE);
        self.empty_ordered_dict();
        self.op(op::TUPLE);
        self.op(op::REDUCE);
    }
}

/// Writes `{key: OrderedDict(tensors)}` to `path` as `torch.save` would, under a temporary
/// name renamed into place. Records are stored uncompressed at 64-byte boundaries, as
/// PyTorch's writer places them, with a fixed date, so the same tensors give the same bytes.
pub fn save_state_dict(path: &Path, key: &str, tensors: &[Named]) -> Result<(), IoError> {
    let mut pickle = Pickle(Vec::new());
    pickle.op(op::PROTO);
    pickle.0.push(2);
    pickle.op(op::EMPTY_DICT);
    pickle.string(key);
    pickle.empty_ordered_dict();
    pickle.op(op::MARK);
    for (i, t) in tensors.iter().enumerate() {
        pickle.string(t.name);
        pickle.tensor(i, t);
    }
    pickle.op(op::SETITEMS);
    pickle.op(op::SETITEM);
    pickle.op(op::STOP);

    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.is_ascii())
        .unwrap_or("archive");
    let fail = |e: &dyn std::fmt::Display| IoError::invalid(path, format!("cannot write: {e}"));
    crate::io::atomically(path, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| IoError::io(tmp, e))?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .with_alignment(64);
        let mut record = |name: &str, bytes: &[u8]| -> Result<(), IoError> {
            zip.start_file(format!("{stem}/{name}"), options)
                .map_err(|e| fail(&e))?;
            zip.write_all(bytes).map_err(|e| fail(&e))
        };
        record("data.pkl", &pickle.0)?;
        record("byteorder", b"little")?;
        for (i, t) in tensors.iter().enumerate() {
            record(&format!("data/{i}"), t.data)?;
        }
        record("version", b"3\n")?;
        zip.finish()
            .map_err(|e| fail(&e))?
            .flush()
            .map_err(|e| IoError::io(tmp, e))
    })
}

/// A tensor read from a PyTorch checkpoint: floating-point types as f32, integers as i64.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// Key prefixes that wrap a backbone's torchvision names in the checkpoints the paper's
/// notebooks load (less-is-more.md §4.1, §5.3): SwAV and SparK under Lightning (`model.`),
/// MoCo (`encoder_q.`), BYOL (`online_network.encoder.`), DataParallel (`module.`).
const WRAPPERS: [&str; 4] = ["model.", "encoder_q.", "online_network.encoder.", "module."];

/// The state dict of a `torch.save` zip (`.pt`, `.pth`, a Lightning `.ckpt`), by the
/// paper's rules: the checkpoint's `module` (SparK) or `state_dict` (Lightning) entry, else
/// the checkpoint itself, with a wrapping prefix taken off every name. Storages saved on a
/// GPU read the same (their device is ignored); non-tensor entries are left out.
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Vec<usize>, Values)>, IoError> {
    let fail = |why: String| IoError::invalid(path, why);
    super::require_regular(path)?;
    let file = std::fs::File::open(path).map_err(|e| IoError::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fail(format!("not a PyTorch zip checkpoint: {e}")))?;
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| fail(format!("member {i}: {e}")))?;
        names.push(
            entry
                .name()
                .map_err(|e| fail(format!("member {i}: {e}")))?
                .to_string(),
        );
    }
    let mut read = |name: &str| -> Result<Option<Vec<u8>>, IoError> {
        let Ok(mut entry) = zip.by_name(name) else {
            return Ok(None);
        };
        super::read_member(path, name, &mut entry).map(Some)
    };
    let pickle_name = names
        .into_iter()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .ok_or_else(|| {
            fail("no data.pkl: not a checkpoint torch.save wrote (PyTorch 1.6 or later)".into())
        })?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let pickle = read(&pickle_name)?.expect("listed");
    let big = read(&format!("{prefix}byteorder"))?.is_some_and(|b| b.starts_with(b"big"));
    let top = super::pickle::parse(&pickle).map_err(|e| fail(format!("data.pkl: {e}")))?;
    let state = top
        .get("module")
        .or_else(|| top.get("state_dict"))
        .unwrap_or(&top);
    let super::pickle::Value::Dict(items) = state else {
        return Err(fail("the checkpoint holds no state dict".into()));
    };
    let mut storages: std::collections::HashMap<String, Vec<u8>> = Default::default();
    let mut out = Vec::new();
    for (key, value) in items {
        let (super::pickle::Value::Str(name), super::pickle::Value::Tensor(t)) = (key, value)
        else {
            continue;
        };
        if !storages.contains_key(&t.key) {
            let record = format!("{prefix}data/{}", t.key);
            let bytes =
                read(&record)?.ok_or_else(|| fail(format!("{name}: no record {record}")))?;
            storages.insert(t.key.clone(), bytes);
        }
        let values =
            gather(&storages[&t.key], t, big).map_err(|why| fail(format!("{name}: {why}")))?;
        let name = WRAPPERS
            .iter()
            .find_map(|w| name.strip_prefix(w))
            .unwrap_or(name);
        out.push((name.to_string(), t.shape.clone(), values));
    }
    Ok(out)
}

/// The elements of tensor `t` in C order, read through its offset and strides.
fn gather(storage: &[u8], t: &super::pickle::TensorRef, big: bool) -> Result<Values, String> {
    let size = match t.storage.as_str() {
        "FloatStorage" | "IntStorage" => 4,
        "DoubleStorage" | "LongStorage" => 8,
        "HalfStorage" | "BFloat16Storage" | "ShortStorage" => 2,
        "ByteStorage" | "CharStorage" | "BoolStorage" => 1,
        other => return Err(format!("{other} tensors are not supported")),
    };
    if t.stride.len() != t.shape.len() {
        return Err("its strides do not match its shape".into());
    }
    let limit = super::limits::max_voxels();
    let numel = t
        .shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .filter(|&n| n <= limit)
        .ok_or_else(|| format!("shape {:?} claims more than {limit} elements", t.shape))?
        as usize;
    let past_the_end = "it reaches past the end of its storage";
    let mut index = vec![0usize; t.shape.len()];
    let mut words = Vec::new();
    for _ in 0..numel {
        let at = index
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |at, (i, s)| at.checked_add(i.checked_mul(*s)?))
            .and_then(|at| Some(at.checked_mul(size)?..at.checked_add(1)?.checked_mul(size)?))
            .ok_or(past_the_end)?;
        let bytes = storage.get(at).ok_or(past_the_end)?;
        let mut word = [0u8; 8];
        word[..size].copy_from_slice(bytes);
        if big {
            word[..size].reverse();
        }
        words.push(u64::from_le_bytes(word));
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    let signed = |w: u64| {
        let shift = 64 - 8 * size as u32;
        ((w << shift) as i64) >> shift
    };
    Ok(match t.storage.as_str() {
        "FloatStorage" => Values::F32(words.iter().map(|&w| f32::from_bits(w as u32)).collect()),
        "DoubleStorage" => Values::F32(words.iter().map(|&w| f64::from_bits(w) as f32).collect()),
        "HalfStorage" => Values::F32(
            words
                .iter()
                .map(|&w| half::f16::from_bits(w as u16).to_f32())
                .collect(),
        ),
        "BFloat16Storage" => Values::F32(
            words
                .iter()
                .map(|&w| half::bf16::from_bits(w as u16).to_f32())
                .collect(),
        ),
        "ByteStorage" | "BoolStorage" => Values::I64(words.iter().map(|&w| w as i64).collect()),
        _ => Values::I64(words.into_iter().map(signed).collect()),
    })
}
