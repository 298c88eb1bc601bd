//! Names lim makes from what files say (volume and patient names, file stems) and
//! fingerprints of text: one rule for every file name lim writes from them.

/// FNV-1a (64 bits): a stable fingerprint of `bytes`, the same on every platform and release.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The longest name lim makes from a file, in bytes: file systems allow 255, and slice
/// numbers and extensions follow it.
pub const MAX_NAME: usize = 100;

/// A name from a file's contents or path made safe for a file name: characters other than
/// ASCII letters, digits, `.`, `_` and `-` become `_`, as do leading dots (so no name is `..`,
/// `.` or hidden); an empty name is `_`; a name longer than [`MAX_NAME`] keeps its start and
/// a hash of the whole, so that distinct names stay distinct.
pub fn safe_name(s: &str) -> String {
    let mut name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dots = name.len() - name.trim_start_matches('.').len();
    name.replace_range(..dots, &"_".repeat(dots));
    if name.is_empty() {
        name.push('_');
    }
    if name.len() > MAX_NAME {
        let hash = fnv1a(s.as_bytes());
        name.truncate(MAX_NAME - 17);
        name.push_str(&format!("-{hash:016x}"));
    }
    name
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn names_from_files_are_plain_short_and_distinct() {
        for (given, want) in [
            ("..", "__"),
            (".", "_"),
            (".hidden", "_hidden"),
            ("", "_"),
            ("/etc/passwd", "_etc_passwd"),
            ("a\0b\u{7}c", "a_b_c"),
            ("..\\..\\x", "___.._x"),
            ("LIDC-IDRI-0001", "LIDC-IDRI-0001"),
            ("a.b", "a.b"),
        ] {
            assert_eq!(safe_name(given), want, "{given:?}");
        }
        let (long, longer) = ("x".repeat(300), "x".repeat(301));
        let (a, b) = (safe_name(&long), safe_name(&longer));
        assert!(
            a.len() == super::MAX_NAME && b.len() == super::MAX_NAME,
            "{a}"
        );
        assert!(a.starts_with("xxxx") && a != b);
    }
}
