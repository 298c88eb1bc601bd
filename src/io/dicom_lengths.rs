//! A check of every length a DICOM file's element headers claim, before dicom-rs parses it:
//! the parser allocates a value's claimed length before reading it (up to 4 GiB from a
//! 200-byte file), and recurses once per nested sequence (a stack overflow from a file of
//! nested sequences). Walked without recursion, in the file's own encoding.

use std::path::Path;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

use super::IoError;

/// Deeper nesting of sequences and items than any real file holds.
const MAX_DEPTH: usize = 64;
const UNDEFINED: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Encoding {
    explicit: bool,
    little: bool,
}

/// What an open container holds.
#[derive(Clone, Copy, PartialEq)]
enum Holds {
    /// Items (a sequence).
    Items,
    /// Elements (an item of a sequence).
    Elements,
    /// Fragments of encapsulated pixel data: items of raw bytes.
    Fragments,
}

struct Container {
    holds: Holds,
    /// Where it ends, for a defined length.
    end: Option<usize>,
}

/// Checks `bytes`, a whole DICOM file (preamble optional). `Ok` means no header claims more
/// than what is left of the file or of its enclosing sequence or item; anything else wrong
/// with the file is left for the parser to name. Deflated data sets are inflated first,
/// no further than `limit` bytes.
pub fn check(path: &Path, bytes: &[u8], limit: u64) -> Result<(), IoError> {
    let start = match bytes.get(128..132) {
        Some(b"DICM") => 132,
        _ if bytes.starts_with(b"DICM") => 4,
        _ => 0,
    };
    let le = Encoding {
        explicit: true,
        little: true,
    };
    let (meta_end, syntax) = meta(path, bytes, start)?;
    let data = &bytes[meta_end..];
    match syntax.trim_end_matches(['\0', ' ']) {
        "1.2.840.10008.1.2" => walk(
            path,
            data,
            Encoding {
                explicit: false,
                little: true,
            },
        ),
        "1.2.840.10008.1.2.2" => walk(
            path,
            data,
            Encoding {
                explicit: true,
                little: false,
            },
        ),
        "1.2.840.10008.1.2.1.99" => {
            use std::io::Read;
            let mut inflated = Vec::new();
            let read = flate2::read::DeflateDecoder::new(data)
                .take(limit.saturating_add(1))
                .read_to_end(&mut inflated);
            // The parser inflates the same stream, allocating each value's claimed length
            // as it goes: a stream that breaks off is refused here, before that.
            if let Err(e) = read {
                return Err(IoError::invalid(
                    path,
                    format!("not a readable DICOM file: corrupt deflated data set: {e}"),
                ));
            }
            if inflated.len() as u64 > limit {
                return Err(IoError::invalid(
                    path,
                    format!("the deflated data set inflates past {limit} bytes"),
                ));
            }
            walk(path, &inflated, le)
        }
        _ => walk(path, data, le),
    }
}

/// The file meta group (explicit VR little endian) from `at`: where it ends and its transfer
/// syntax UID. Where the group starts with its length (0002,0000), the parser reads the
/// elements that length covers, whatever their group, and the data set starts after them;
/// without it, the parser refuses the file, and the group 0002 elements are walked.
fn meta(path: &Path, bytes: &[u8], mut at: usize) -> Result<(usize, String), IoError> {
    let le = Encoding {
        explicit: true,
        little: true,
    };
    let group_length = match header(bytes, at, le) {
        Some(h) if h.tag == Tag(0x0002, 0x0000) && h.length == 4 => {
            let value = at + h.size;
            let Some(length) = bytes.get(value..value + 4) else {
                return Ok((value, String::new()));
            };
            at = value + 4;
            Some(u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize)
        }
        _ => None,
    };
    let mut covered = 0;
    let mut syntax = String::new();
    while let Some(header) = header(bytes, at, le) {
        let in_meta = match group_length {
            Some(length) => covered < length,
            None => header.tag.0 == 0x0002,
        };
        if !in_meta {
            break;
        }
        let value = at + header.size;
        whole_values(path, &header)?;
        let end = fits(path, bytes.len(), &header, value)?;
        if header.tag == Tag(0x0002, 0x0010) {
            syntax = String::from_utf8_lossy(&bytes[value..end]).into_owned();
        }
        covered += end - at;
        at = end;
    }
    Ok((at, syntax))
}

/// An element or item header.
struct Header {
    tag: Tag,
    vr: Option<VR>,
    length: u32,
    /// Bytes of the header itself.
    size: usize,
}

fn header(bytes: &[u8], at: usize, e: Encoding) -> Option<Header> {
    let u16_at = |i: usize| -> Option<u16> {
        let b: [u8; 2] = bytes.get(i..i + 2)?.try_into().ok()?;
        Some(if e.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(i..i + 4)?.try_into().ok()?;
        Some(if e.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let tag = Tag(u16_at(at)?, u16_at(at + 2)?);
    if tag.0 == 0xFFFE {
        return Some(Header {
            tag,
            vr: None,
            length: u32_at(at + 4)?,
            size: 8,
        });
    }
    if !e.explicit {
        let vr = if tag == Tag(0x7FE0, 0x0010) {
            Some(VR::OW)
        } else {
            StandardDataDictionary
                .by_tag(tag)
                .map(|entry| entry.vr().relaxed())
        };
        return Some(Header {
            tag,
            vr,
            length: u32_at(at + 4)?,
            size: 8,
        });
    }
    let code: [u8; 2] = bytes.get(at + 4..at + 6)?.try_into().ok()?;
    // As the parser reads them: an unknown VR is UN, with a 4-byte length.
    let vr = VR::from_binary(code).unwrap_or(VR::UN);
    use VR::*;
    Some(match vr {
        OB | OD | OF | OL | OV | OW | SQ | SV | UC | UN | UR | UT | UV => Header {
            tag,
            vr: Some(vr),
            length: u32_at(at + 8)?,
            size: 12,
        },
        _ => Header {
            tag,
            vr: Some(vr),
            length: u16_at(at + 6)? as u32,
            size: 8,
        },
    })
}

/// The end of a defined-length value starting at `value`, if it fits before `bound`.
fn fits(path: &Path, bound: usize, h: &Header, value: usize) -> Result<usize, IoError> {
    let end = value.saturating_add(h.length as usize);
    if end > bound {
        return Err(IoError::invalid(
            path,
            format!(
                "not a readable DICOM file: element ({:04X},{:04X}) claims {} bytes, but only {} remain",
                h.tag.0,
                h.tag.1,
                h.length,
                bound.saturating_sub(value)
            ),
        ));
    }
    Ok(end)
}

/// Refuses a binary value whose length is not a whole number of its values: the parser reads
/// `length / size` of them and goes on from a misaligned position, where anything it reads
/// next can claim a length no check saw.
fn whole_values(path: &Path, h: &Header) -> Result<(), IoError> {
    use VR::*;
    let size = match h.vr {
        Some(US | SS) => 2,
        Some(AT | FL | SL | UL | OF | OL) => 4,
        Some(FD | SV | UV | OD | OV) => 8,
        _ => return Ok(()),
    };
    if h.length.is_multiple_of(size) {
        return Ok(());
    }
    Err(IoError::invalid(
        path,
        format!(
            "not a readable DICOM file: element ({:04X},{:04X}) holds {} bytes, not a whole number of {size}-byte values",
            h.tag.0, h.tag.1, h.length
        ),
    ))
}

/// Walks a data set's elements, entering sequences and items.
fn walk(path: &Path, bytes: &[u8], e: Encoding) -> Result<(), IoError> {
    let mut open: Vec<Container> = Vec::new();
    let mut at = 0;
    loop {
        while open
            .last()
            .is_some_and(|c| c.end.is_some_and(|end| at >= end))
        {
            open.pop();
        }
        let bound = open.iter().rev().find_map(|c| c.end).unwrap_or(bytes.len());
        // What the header says past this point is the parser's to refuse.
        let Some(h) = header(bytes, at, e) else {
            return Ok(());
        };
        let value = at + h.size;
        let holds = open.last().map_or(Holds::Elements, |c| c.holds);
        // Delimiters and items are what the parser takes them for where they stand: in a
        // sequence, items and its end; among elements, only an item's end; any other such
        // tag among elements is an element, whose length the parser allocates.
        let item_tag = |element| h.tag == Tag(0xFFFE, element);
        let sequence_end = holds != Holds::Elements && item_tag(0xE0DD);
        match (holds, h.length) {
            _ if item_tag(0xE00D) || sequence_end => {
                open.pop();
                at = value;
                continue;
            }
            // A fragment of pixel data: raw bytes.
            (Holds::Fragments, length) if item_tag(0xE000) => {
                if length == UNDEFINED {
                    return Ok(());
                }
                at = fits(path, bound, &h, value)?;
                continue;
            }
            (Holds::Items, UNDEFINED) if item_tag(0xE000) => open.push(Container {
                holds: Holds::Elements,
                end: None,
            }),
            (Holds::Items, _) if item_tag(0xE000) => {
                let end = fits(path, bound, &h, value)?;
                open.push(Container {
                    holds: Holds::Elements,
                    end: Some(end),
                });
            }
            (_, UNDEFINED) if h.tag == Tag(0x7FE0, 0x0010) => open.push(Container {
                holds: Holds::Fragments,
                end: None,
            }),
            (_, UNDEFINED) => open.push(Container {
                holds: Holds::Items,
                end: None,
            }),
            (_, _) if h.vr == Some(VR::SQ) => {
                let end = fits(path, bound, &h, value)?;
                open.push(Container {
                    holds: Holds::Items,
                    end: Some(end),
                });
            }
            _ => {
                whole_values(path, &h)?;
                at = fits(path, bound, &h, value)?;
                continue;
            }
        }
        if open.len() > MAX_DEPTH {
            return Err(IoError::invalid(
                path,
                format!("not a readable DICOM file: sequences nested deeper than {MAX_DEPTH}"),
            ));
        }
        at = value;
    }
}
