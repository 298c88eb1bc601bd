//! The zlib streams of lim's PNG slices: one dynamic-Huffman block of literals, with runs of
//! zero bytes as matches at distance 1, coded from the data's own symbol counts.
//!
//! On "Up"-filtered CT slices, whose bytes are small row-to-row differences and whose air is
//! zeros, that is most of what an LZ77 search would find, at the cost of a table lookup per
//! byte: no match search, no hash chains. fdeflate (what the `png` crate uses) codes the same
//! symbols with a fixed table tuned for PNGs in general; a code built for the slice itself
//! makes smaller files, and the loop below looks the codes up two bytes at a time and
//! writes eight bytes' codes per flush.

/// The longest literal/length code: two codes and their length fit a u32 of the pair table
/// (deflate allows 15).
const MAX_LITERAL_BITS: u8 = 13;
/// Where a pair table entry keeps its length, above the code bits.
const PAIR_LENGTH_SHIFT: u32 = 2 * MAX_LITERAL_BITS as u32;
/// The longest code of the code-length alphabet (deflate's limit).
const MAX_CODE_LENGTH_BITS: u8 = 7;
/// Runs of zeros shorter than this stay literals.
const MIN_RUN: usize = 16;
const END_OF_BLOCK: usize = 256;
/// Literals, end of block and the 29 length symbols.
const LITERALS: usize = 286;
/// The order in which a dynamic block lists the code-length code's lengths (RFC 1951 3.2.7).
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// A match length's symbol (257 to 285), its extra bits' count and their value.
#[derive(Clone, Copy)]
struct LengthCode {
    symbol: u16,
    extra_bits: u8,
    extra: u16,
}

/// [`LengthCode`] of every match length, 3 to 258 (RFC 1951 3.2.5).
const LENGTH_CODES: [LengthCode; 259] = {
    const BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    let mut codes = [LengthCode {
        symbol: 0,
        extra_bits: 0,
        extra: 0,
    }; 259];
    let mut length = 3;
    while length <= 258 {
        let mut s = 28;
        while BASE[s] > length as u16 {
            s -= 1;
        }
        codes[length] = LengthCode {
            symbol: 257 + s as u16,
            extra_bits: EXTRA[s],
            extra: length as u16 - BASE[s],
        };
        length += 1;
    }
    codes
};

/// What the data are, as deflate symbols: [`tokens`] hands the runs to a counter, then all
/// of them to the writer, so that the code covers exactly the symbols written.
trait Symbols {
    fn literal(&mut self, byte: u8);
    /// Eight literals: the common case.
    fn eight(&mut self, bytes: &[u8; 8]);
    /// A match of `length` (3 to 258) at distance 1.
    fn run(&mut self, length: usize);
}

/// `data` as literals and zero runs, eight bytes at a time: a run is a series of all-zero
/// 8-byte chunks (the zeros at a run's ends stay literals, so that every other chunk takes
/// the fast path of eight literals).
#[inline(always)]
fn tokens(data: &[u8], sink: &mut impl Symbols) {
    let mut zeros = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let chunk: &[u8; 8] = chunk.try_into().expect("chunks of 8");
        if *chunk == [0; 8] {
            zeros += 8;
            continue;
        }
        if zeros > 0 {
            zero_run(zeros, sink);
            zeros = 0;
        }
        sink.eight(chunk);
    }
    zero_run(zeros, sink);
    for &b in chunks.remainder() {
        sink.literal(b);
    }
}

/// `count` zero bytes (a multiple of 8): a literal zero and matches at distance 1 when the
/// run is long enough.
#[inline(always)]
fn zero_run(count: usize, sink: &mut impl Symbols) {
    if count < MIN_RUN {
        for _ in 0..count / 8 {
            sink.eight(&[0; 8]);
        }
        return;
    }
    sink.literal(0);
    let mut left = count - 1;
    while left >= 3 {
        // Never leave 1 or 2 bytes behind a match: they would have to be literals.
        let length = if (259..261).contains(&left) {
            left - 3
        } else {
            left.min(258)
        };
        sink.run(length);
        left -= length;
    }
    for _ in 0..left {
        sink.literal(0);
    }
}

/// How often each literal/length symbol occurs in the stream: what [`tokens`] hands the
/// writer, counted.
struct Counts {
    symbols: [u32; LITERALS],
    /// Four more tables for the literals of [`Symbols::eight`], so that a run of one value
    /// does not wait on its counter's last increment.
    eights: [[u32; 256]; 4],
}

impl Symbols for Counts {
    fn literal(&mut self, byte: u8) {
        self.symbols[byte as usize] += 1;
    }
    #[inline(always)]
    fn eight(&mut self, bytes: &[u8; 8]) {
        for (i, &b) in bytes.iter().enumerate() {
            self.eights[i % 4][b as usize] += 1;
        }
    }
    fn run(&mut self, length: usize) {
        self.symbols[LENGTH_CODES[length].symbol as usize] += 1;
    }
}

/// The symbol counts of `data`'s stream, end of block included.
#[inline(always)]
fn symbol_counts(data: &[u8]) -> [u32; LITERALS] {
    let mut counts = Counts {
        symbols: [0; LITERALS],
        eights: [[0; 256]; 4],
    };
    tokens(data, &mut counts);
    let mut symbols = counts.symbols;
    for table in &counts.eights {
        for (count, &n) in symbols.iter_mut().zip(table) {
            *count += n;
        }
    }
    symbols[END_OF_BLOCK] = 1;
    symbols
}

/// Code lengths (0 for unused symbols) of a Huffman code for `counts` with no code longer
/// than `limit`. At least two symbols get a code (an unused one is added where the counts
/// have fewer), so that the code is complete, as zlib requires of some of a block's codes.
fn code_lengths(counts: &[u32], limit: u8) -> Vec<u8> {
    let mut used: Vec<usize> = (0..counts.len()).filter(|&s| counts[s] > 0).collect();
    let missing = 2usize.saturating_sub(used.len());
    used.extend((0..counts.len()).filter(|&s| counts[s] == 0).take(missing));
    // Most frequent first; ties by symbol, so that the code is a function of the counts.
    used.sort_by_key(|&s| (std::cmp::Reverse(counts[s]), s));
    let depths = huffman_depths(&used.iter().map(|&s| counts[s]).collect::<Vec<_>>());
    // How many codes of each length; those past the limit are moved up, then longer codes
    // are split until the lengths form a complete prefix code again (miniz's way).
    let limit = limit as usize;
    let mut per_length = vec![0u32; limit + 1];
    for d in depths {
        per_length[d.min(limit)] += 1;
    }
    let kraft = |per_length: &[u32]| -> u64 {
        (1..=limit)
            .map(|d| u64::from(per_length[d]) << (limit - d))
            .sum()
    };
    let mut total = kraft(&per_length);
    while total > 1 << limit {
        per_length[limit] -= 1;
        if let Some(d) = (1..limit).rev().find(|&d| per_length[d] > 0) {
            per_length[d] -= 1;
            per_length[d + 1] += 2;
        }
        total -= 1;
    }
    // The shortest codes to the most frequent symbols.
    let mut lengths = vec![0u8; counts.len()];
    let mut next = used.iter();
    for (d, &n) in per_length.iter().enumerate() {
        for _ in 0..n {
            lengths[*next.next().expect("one length per used symbol")] = d as u8;
        }
    }
    lengths
}

/// The depth of each leaf of a Huffman tree over `weights` (at least two).
fn huffman_depths(weights: &[u32]) -> Vec<usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut parent = vec![usize::MAX; 2 * weights.len() - 1];
    let mut heap: BinaryHeap<Reverse<(u64, usize)>> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Reverse((u64::from(w), i)))
        .collect();
    let mut next = weights.len();
    while heap.len() > 1 {
        let Reverse((wa, a)) = heap.pop().expect("two nodes");
        let Reverse((wb, b)) = heap.pop().expect("two nodes");
        parent[a] = next;
        parent[b] = next;
        heap.push(Reverse((wa + wb, next)));
        next += 1;
    }
    // Parents come after their children, so one pass from the root down gives every depth.
    let mut depth = vec![0usize; parent.len()];
    for node in (0..parent.len() - 1).rev() {
        depth[node] = depth[parent[node]] + 1;
    }
    depth.truncate(weights.len());
    depth
}

/// Canonical codes of `lengths`, bit-reversed for deflate's LSB-first order, each packed
/// with its length as `code | length << 16`.
fn canonical_codes(lengths: &[u8]) -> Vec<u32> {
    let mut per_length = [0u32; 16];
    for &l in lengths {
        per_length[l as usize] += 1;
    }
    per_length[0] = 0;
    let mut next = [0u32; 16];
    for l in 1..16 {
        next[l] = (next[l - 1] + per_length[l - 1]) << 1;
    }
    lengths
        .iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let code = next[l as usize];
            next[l as usize] += 1;
            (code.reverse_bits() >> (32 - l)) | u32::from(l) << 16
        })
        .collect()
}

/// Bits written LSB first, eight bytes at a time, into a buffer grown as they come: sizing
/// it for the worst case ahead (twice the data) would cost zeroing four times what a slice
/// compresses to.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    at: usize,
    bits: u64,
    count: u32,
}

impl BitWriter<'_> {
    /// Adds `n` bits: at most 56, so that with the up to 7 a flush leaves they fit 64 (and
    /// `count` stays under 64, so the shift below is never by 64).
    #[inline(always)]
    fn put(&mut self, bits: u64, n: u32) {
        if self.at + 8 > self.out.len() {
            grow(self.out);
        }
        self.bits |= bits << self.count;
        self.count += n;
        self.out[self.at..self.at + 8].copy_from_slice(&self.bits.to_le_bytes());
        let whole = self.count / 8;
        self.at += whole as usize;
        self.bits >>= whole * 8;
        self.count -= whole * 8;
    }

    /// Puts one packed code (`code | length << 16`).
    #[inline(always)]
    fn code(&mut self, packed: u32) {
        self.put(u64::from(packed & 0xffff), packed >> 16);
    }

    /// Pads to a byte and drops the bytes past the last one written.
    fn finish(mut self) {
        if self.count > 0 {
            self.put(0, 8 - self.count);
        }
        self.out.truncate(self.at);
    }
}

/// Grows `out` by half or more: it takes the writer's buffer, not the writer, whose
/// position and bits then stay in registers.
#[cold]
fn grow(out: &mut Vec<u8>) {
    let more = out.len().clamp(64, 1 << 20);
    out.resize(out.len() + more, 0);
}

/// The codes of every pair of literals, `first | second << first's length`, with their
/// total length above [`PAIR_LENGTH_SHIFT`], indexed by the two bytes as a little-endian u16.
#[inline(always)]
fn pair_codes(literals: &[u32; 256]) -> Vec<u32> {
    let mut pairs = Vec::with_capacity(1 << 16);
    for &second in literals {
        let (code, length) = (second & 0xffff, second >> 16);
        pairs.extend(literals.iter().map(|&first| {
            let first_length = first >> 16;
            (first & 0xffff | code << first_length) | (first_length + length) << PAIR_LENGTH_SHIFT
        }));
    }
    pairs
}

/// Writes the block's symbols with the data's own codes.
struct Writer<'a> {
    bits: BitWriter<'a>,
    literals: &'a [u32; 256],
    pairs: &'a [u32; 1 << 16],
    lengths: &'a [u32],
}

impl Symbols for Writer<'_> {
    #[inline(always)]
    fn literal(&mut self, byte: u8) {
        self.bits.code(self.literals[byte as usize]);
    }
    #[inline(always)]
    fn eight(&mut self, bytes: &[u8; 8]) {
        let pair = |i: usize| self.pairs[usize::from(u16::from_le_bytes([bytes[i], bytes[i + 1]]))];
        let packed = [pair(0), pair(2), pair(4), pair(6)];
        let total: u32 = packed.iter().map(|p| p >> PAIR_LENGTH_SHIFT).sum();
        // One flush for all eight bytes where their codes fit its 56 bits, as they mostly
        // do; else two of two pairs (at most 52 bits).
        if total <= 56 {
            self.put_pairs(&packed);
        } else {
            self.put_pairs(&packed[..2]);
            self.put_pairs(&packed[2..]);
        }
    }
    #[inline(always)]
    fn run(&mut self, length: usize) {
        let code = LENGTH_CODES[length];
        let packed = self.lengths[code.symbol as usize];
        let n = packed >> 16;
        // The length's code, its extra bits, then distance code 0 (distance 1): a 0 bit.
        let bits = u64::from(packed & 0xffff) | u64::from(code.extra) << n;
        self.bits.put(bits, n + u32::from(code.extra_bits) + 1);
    }
}

impl Writer<'_> {
    /// Puts pair codes whose lengths add up to at most 56 bits.
    #[inline(always)]
    fn put_pairs(&mut self, packed: &[u32]) {
        let mut bits = 0u64;
        let mut n = 0;
        for p in packed {
            bits |= u64::from(p & ((1 << PAIR_LENGTH_SHIFT) - 1)) << n;
            n += p >> PAIR_LENGTH_SHIFT;
        }
        self.bits.put(bits, n);
    }
}

/// The most bytes [`zlib`] writes for `n` bytes of data.
pub fn zlib_bound(n: usize) -> usize {
    // 13 bits a literal at most, the block's header, the zlib header and checksum.
    n * 2 + 512
}

/// Appends the zlib stream of `data` to `out`.
pub fn zlib(data: &[u8], out: &mut Vec<u8>) {
    crate::simd::with_avx2!(zlib_body(data, out))
}

#[inline(always)]
fn zlib_body(data: &[u8], out: &mut Vec<u8>) {
    let lengths = code_lengths(&symbol_counts(data), MAX_LITERAL_BITS);
    let used = lengths.iter().rposition(|&l| l > 0).expect("end of block") + 1;
    let literal_count = used.max(257);
    let codes = canonical_codes(&lengths);
    let literals: &[u32; 256] = codes[..256].try_into().expect("256 literals");
    let pairs = pair_codes(literals);

    // CMF 0x78 (deflate, 32 KiB window), FLG 0x01 (fastest; the pair is a multiple of 31).
    out.extend_from_slice(&[0x78, 0x01]);
    let at = out.len();
    let mut bits = BitWriter {
        out,
        at,
        bits: 0,
        count: 0,
    };
    // The last block (1), dynamic Huffman codes (2).
    bits.put(0b101, 3);
    write_code_lengths(&mut bits, &lengths[..literal_count]);
    let mut writer = Writer {
        bits,
        literals,
        pairs: pairs[..].try_into().expect("65536 pairs"),
        lengths: &codes,
    };
    tokens(data, &mut writer);
    let mut bits = writer.bits;
    bits.code(codes[END_OF_BLOCK]);
    bits.finish();
    out.extend_from_slice(&libdeflater::adler32(data).to_be_bytes());
}

/// A dynamic block's header: the literal/length code's lengths and a distance code of two
/// one-bit codes (distance 1, and one unused, so that the code is complete), themselves
/// coded with runs (RFC 1951 3.2.7).
fn write_code_lengths(bits: &mut BitWriter, literal_lengths: &[u8]) {
    let mut all = literal_lengths.to_vec();
    all.extend([1, 1]);
    // (symbol, extra bits' count, their value)
    let mut steps: Vec<(usize, u32, u64)> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let value = all[i];
        let same = all[i..].iter().take_while(|&&l| l == value).count();
        if value == 0 && same >= 3 {
            let n = same.min(138);
            steps.push(if n <= 10 {
                (17, 3, n as u64 - 3)
            } else {
                (18, 7, n as u64 - 11)
            });
            i += n;
        } else if value != 0 && same >= 4 {
            steps.push((value as usize, 0, 0));
            let n = (same - 1).min(6);
            steps.push((16, 2, n as u64 - 3));
            i += 1 + n;
        } else {
            steps.push((value as usize, 0, 0));
            i += 1;
        }
    }
    let mut counts = [0u32; 19];
    for &(symbol, _, _) in &steps {
        counts[symbol] += 1;
    }
    let lengths = code_lengths(&counts, MAX_CODE_LENGTH_BITS);
    let codes = canonical_codes(&lengths);
    let listed = CODE_LENGTH_ORDER
        .iter()
        .rposition(|&s| lengths[s] > 0)
        .map_or(4, |p| (p + 1).max(4));
    bits.put(literal_lengths.len() as u64 - 257, 5);
    bits.put(1, 5);
    bits.put(listed as u64 - 4, 4);
    for &s in &CODE_LENGTH_ORDER[..listed] {
        bits.put(u64::from(lengths[s]), 3);
    }
    for (symbol, extra_bits, extra) in steps {
        bits.code(codes[symbol]);
        if extra_bits > 0 {
            bits.put(extra, extra_bits);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(stream: &[u8], size: usize) -> Vec<u8> {
        let mut out = vec![0; size];
        let n = libdeflater::Decompressor::new()
            .zlib_decompress(stream, &mut out)
            .expect("libdeflate inflates it, checksum included");
        assert_eq!(n, size);
        let mut again = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(stream), &mut again)
            .expect("zlib-rs inflates it");
        assert_eq!(again, out);
        out
    }

    fn round_trip(data: &[u8]) -> usize {
        let mut stream = Vec::new();
        zlib(data, &mut stream);
        assert!(stream.len() <= zlib_bound(data.len()));
        assert_eq!(inflate(&stream, data.len()), data);
        stream.len()
    }

    #[test]
    fn streams_inflate_to_their_data() {
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng as u8
                })
                .collect()
        };
        // Short, long, single-symbol and incompressible data, and zero runs of every length
        // around the match limits, at and off the 8-byte chunk edges.
        round_trip(&[0]);
        round_trip(&[7]);
        round_trip(&[1, 2, 3]);
        round_trip(&vec![0; 100_000]);
        round_trip(&vec![200; 1000]);
        round_trip(&noise(70_000));
        for run in [7, 8, 9, 10, 11, 258, 259, 260, 261, 262, 263, 517, 1000] {
            for offset in 0..9 {
                let mut data = noise(40);
                data.extend(vec![0; offset]);
                data.push(5);
                data.extend(vec![0; run]);
                data.push(9);
                data.extend(noise(offset + 3));
                data.extend(vec![0; run]);
                round_trip(&data);
            }
        }
    }

    #[test]
    fn zero_runs_compress_and_small_differences_take_few_bits() {
        // Air: 1 MB of zeros is a few kilobytes of 258-byte matches.
        assert!(round_trip(&vec![0; 1 << 20]) < 5000);
        // Up-filtered CT: mostly small differences, coded in well under 8 bits each.
        let mut rng = 1u32;
        let data: Vec<u8> = (0..100_000)
            .map(|_| {
                rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((rng >> 16) % 9) as u8
            })
            .map(|d| d.wrapping_sub(4))
            .collect();
        assert!(round_trip(&data) < 100_000 * 45 / 80);
    }

    #[test]
    fn codes_are_complete_and_within_their_limit() {
        // Fibonacci counts make the deepest Huffman trees: 40 symbols would need 39 bits.
        let mut fib = vec![1u32, 1];
        while fib.len() < 40 {
            fib.push(fib[fib.len() - 1] + fib[fib.len() - 2]);
        }
        for (counts, limit) in [
            (fib.clone(), 14),
            (fib.clone(), 7),
            (vec![5, 0, 0, 0], 7),
            (vec![0, 0, 3], 14),
            (vec![1; 286], 14),
            (vec![1; 19], 7),
        ] {
            let lengths = code_lengths(&counts, limit);
            assert!(lengths.iter().all(|&l| l <= limit), "{counts:?}");
            let kraft: f64 = lengths
                .iter()
                .filter(|&&l| l > 0)
                .map(|&l| 0.5f64.powi(l.into()))
                .sum();
            assert_eq!(kraft, 1.0, "complete code for {counts:?}: {lengths:?}");
            for (s, &c) in counts.iter().enumerate() {
                assert!(c == 0 || lengths[s] > 0, "symbol {s} used but not coded");
            }
        }
        // More frequent symbols never get longer codes.
        let lengths = code_lengths(&fib, 14);
        assert!(lengths.windows(2).all(|w| w[0] >= w[1]), "{lengths:?}");
    }
}
