//! A JPEG file's layout, read without decoding it: its frame (size, components and their
//! sampling) and how many bytes its scans hold. Read before the decoder runs, it refuses a file
//! cut short (no end-of-image marker after its scans) and a file whose header claims more
//! pixels than its bytes can code, before a pixel is allocated; and [`with_sentinel`] makes a
//! last scan whose data runs out early (a cut file given its end marker back) fail to decode.
//!
//! The rule for the second: every 8x8 block of every component codes its DC coefficient in at
//! least one bit (a Huffman code is 1 to 16 bits; a scan codes every block of its components,
//! and a progressive JPEG sends the DC of every component before its AC). A baseline (or
//! extended) sequential block also ends its AC coefficients with at least one more code (an
//! end-of-block, or the last coefficient), so it takes at least two bits; a progressive one may
//! send its AC as end-of-block runs of up to 32767 blocks, so only its DC bit is counted. A
//! file whose scans hold fewer bytes than `blocks * bits / 8` cannot be a whole image: at most
//! 512 pixels a byte of scan data for a progressive grayscale JPEG, 171 for a 4:4:4 color one.

/// What [`layout`] finds in a JPEG file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    /// A progressive frame (SOF2); otherwise a sequential one (SOF0, SOF1).
    pub progressive: bool,
    /// The (horizontal, vertical) sampling factors of each component, each 1 to 4.
    pub sampling: Vec<(u8, u8)>,
    /// The bytes of entropy-coded data in all scans, stuffed bytes and restart markers in.
    pub coded_bytes: u64,
    /// Where the last scan's data ends, when the end-of-image marker follows it there.
    pub last_scan_end: Option<usize>,
}

impl Layout {
    /// The 8x8 blocks of all components (without the padding to whole MCUs).
    pub fn blocks(&self) -> u64 {
        let hmax = self.sampling.iter().map(|s| s.0 as u64).max().unwrap_or(1);
        let vmax = self.sampling.iter().map(|s| s.1 as u64).max().unwrap_or(1);
        let (w, h) = (self.width as u64, self.height as u64);
        self.sampling
            .iter()
            .map(|&(sh, sv)| {
                let cw = (w * sh as u64).div_ceil(hmax);
                let ch = (h * sv as u64).div_ceil(vmax);
                cw.div_ceil(8) * ch.div_ceil(8)
            })
            .sum()
    }

    /// The least bits of scan data that code every block: one a block in a progressive frame,
    /// two in a sequential one.
    pub fn least_coded_bits(&self) -> u64 {
        self.blocks() * if self.progressive { 1 } else { 2 }
    }

    /// An error unless the scans hold the bytes the claimed size needs (`size`, the file's
    /// bytes, is named in the message).
    pub fn check_coded_bytes(&self, size: usize) -> Result<(), String> {
        let need = self.least_coded_bits().div_ceil(8);
        if self.coded_bytes >= need {
            return Ok(());
        }
        let (kind, bits) = if self.progressive {
            ("a progressive", "one bit")
        } else {
            ("a baseline", "two bits")
        };
        Err(format!(
            "its header claims {}x{} pixels, more than its {size} bytes can code: its scans \
             hold {} bytes, and the {} blocks of 8x8 pixels of its components take at least \
             {need} ({bits} a block in {kind} JPEG); it is corrupt or truncated",
            self.width,
            self.height,
            self.coded_bytes,
            self.blocks()
        ))
    }
}

fn truncated(size: usize, inside: &str) -> String {
    format!("it ends after {size} bytes, {inside}, before its end-of-image marker: it is truncated")
}

/// The layout of a JPEG file, or why it is not a whole one.
///
/// The file is walked marker by marker: each segment by its length, each scan's entropy-coded
/// data up to the marker that ends it, until the end-of-image marker. Bytes after that marker
/// are not read (as the decoder does not).
pub fn layout(bytes: &[u8]) -> Result<Layout, String> {
    let size = bytes.len();
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("it does not start with a JPEG start-of-image marker".into());
    }
    let mut frame: Option<Layout> = None;
    let mut coded_bytes = 0u64;
    let mut scans = 0usize;
    let mut last_scan_end = None;
    let mut pos = 2;
    loop {
        match bytes.get(pos) {
            None => return Err(truncated(size, "between its segments")),
            Some(0xFF) => {}
            Some(other) => {
                return Err(format!(
                    "byte {pos} is 0x{other:02X} where a marker should be: it is corrupt"
                ))
            }
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1; // a marker may be preceded by fill bytes
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(truncated(size, "inside a marker"));
        };
        pos += 1;
        match marker {
            0xD9 => break,
            0x00 | 0x01 | 0xD0..=0xD8 => {
                return Err(format!(
                    "marker 0xFF{marker:02X} at byte {} is out of place: it is corrupt",
                    pos - 2
                ))
            }
            _ => {}
        }
        let Some(length) = bytes.get(pos..pos + 2) else {
            return Err(truncated(size, "inside a segment's length"));
        };
        let length = u16::from_be_bytes([length[0], length[1]]) as usize;
        if length < 2 {
            return Err(format!(
                "the segment of marker 0xFF{marker:02X} at byte {} has length {length}: it is \
                 corrupt",
                pos - 2
            ));
        }
        let Some(body) = bytes.get(pos + 2..pos + length) else {
            return Err(truncated(size, "inside a header segment"));
        };
        pos += length;
        match marker {
            0xC0..=0xC2 => {
                if frame.is_some() {
                    return Err("it has a second frame header: it is corrupt".into());
                }
                frame = Some(frame_of(body, marker == 0xC2)?);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(format!(
                    "it is a {} JPEG (marker 0xFF{marker:02X}); only baseline, extended and \
                     progressive Huffman-coded JPEGs are read",
                    match marker {
                        0xC3 => "lossless",
                        0xC5..=0xC7 => "hierarchical",
                        _ => "arithmetic-coded",
                    }
                ))
            }
            0xDA => {
                if frame.is_none() {
                    return Err("a scan comes before the frame header: it is corrupt".into());
                }
                scans += 1;
                let start = pos;
                pos = end_of_scan(bytes, pos)
                    .ok_or_else(|| truncated(size, &format!("inside the data of scan {scans}")))?;
                coded_bytes += (pos - start) as u64;
                last_scan_end = (bytes.get(pos + 1) == Some(&0xD9)).then_some(pos);
            }
            _ => {}
        }
    }
    let mut frame = frame.ok_or("it has no frame header (SOF): it is corrupt")?;
    if scans == 0 {
        return Err("it has no scan (SOS): it is corrupt".into());
    }
    frame.coded_bytes = coded_bytes;
    frame.last_scan_end = last_scan_end;
    Ok(frame)
}

/// Bits that no JPEG Huffman code is (codes of all one bits are not assigned, T.81 C), as
/// stuffed bytes: eight bytes of one bits, more than a symbol's code, its extra bits and the
/// next code take.
const SENTINEL: [u8; 16] = [
    0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00,
];

/// The file with [`SENTINEL`] between the last scan's data and the end-of-image marker, when
/// the marker follows it there.
///
/// A decoder that runs out of a scan's data before its last block (a file cut short and given
/// an end marker back, say) reads zeros past the marker and draws the rest gray, in zune-jpeg's
/// strict mode too. With the sentinel in between it reads one bits instead and fails on a code
/// no table has; a whole scan's decoder never reads past its data, so the sentinel changes
/// nothing for it (the decoder skips bytes before a marker it looks for).
pub fn with_sentinel(bytes: &[u8], layout: &Layout) -> Option<Vec<u8>> {
    let at = layout.last_scan_end?;
    #[allow(clippy::disallowed_methods)] // bounded: the file, already in memory, and 16 bytes
    let mut out = Vec::with_capacity(bytes.len() + SENTINEL.len());
    out.extend_from_slice(&bytes[..at]);
    out.extend_from_slice(&SENTINEL);
    out.extend_from_slice(&bytes[at..]);
    Some(out)
}

/// A frame header's size and components.
fn frame_of(body: &[u8], progressive: bool) -> Result<Layout, String> {
    let short = || "its frame header is short: it is corrupt".to_string();
    let head = body.get(..6).ok_or_else(short)?;
    let height = u16::from_be_bytes([head[1], head[2]]) as u32;
    let width = u16::from_be_bytes([head[3], head[4]]) as u32;
    let count = head[5] as usize;
    let components = body.get(6..6 + 3 * count).ok_or_else(short)?;
    if count == 0 {
        return Err("its frame has no components: it is corrupt".into());
    }
    let sampling = components
        .chunks_exact(3)
        .map(|c| (c[1] >> 4, c[1] & 15))
        .collect::<Vec<_>>();
    if let Some((h, v)) = sampling
        .iter()
        .find(|(h, v)| !(1..=4).contains(h) || !(1..=4).contains(v))
    {
        return Err(format!(
            "a component is sampled {h}x{v}; factors are 1 to 4: it is corrupt"
        ));
    }
    Ok(Layout {
        width,
        height,
        progressive,
        sampling,
        coded_bytes: 0,
        last_scan_end: None,
    })
}

/// Where the entropy-coded data from `pos` ends: at the first marker that is not a restart
/// marker (a stuffed 0xFF00 is data, 0xFF fill bytes go before a marker), or `None` when the
/// file ends first.
fn end_of_scan(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        pos = next_ff(bytes, pos)?;
        match *bytes.get(pos + 1)? {
            0x00 | 0xD0..=0xD7 => pos += 2,
            0xFF => pos += 1,
            _ => return Some(pos),
        }
    }
}

/// The first 0xFF byte from `pos` on, eight bytes a step (a scan's data is most of the file).
fn next_ff(bytes: &[u8], pos: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let rest = bytes.get(pos..)?;
    let mut skipped = 0;
    for chunk in rest.chunks_exact(8) {
        let zeroed = !u64::from_le_bytes(chunk.try_into().expect("8 bytes")); // 0xFF -> 0x00
        if zeroed.wrapping_sub(ONES) & !zeroed & HIGHS != 0 {
            break; // a zero byte in the word: a 0xFF in these eight
        }
        skipped += 8;
    }
    let at = rest[skipped..].iter().position(|&b| b == 0xFF)?;
    Some(pos + skipped + at)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests: sizes of their own
mod tests {
    use super::*;

    /// A JPEG's markers and segments around made-up scan data: `frame` is the SOF marker and
    /// body, `scans` the data of each scan.
    fn file(frame: (u8, Vec<u8>), scans: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        let segment = |out: &mut Vec<u8>, marker: u8, body: &[u8]| {
            out.extend_from_slice(&[0xFF, marker]);
            out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(body);
        };
        segment(&mut out, 0xE0, b"JFIF\0");
        segment(&mut out, frame.0, &frame.1);
        for data in scans {
            segment(&mut out, 0xDA, &[1, 1, 0, 0, 63, 0]);
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    fn sof(width: u16, height: u16, sampling: &[u8]) -> Vec<u8> {
        let mut body = vec![8];
        body.extend_from_slice(&height.to_be_bytes());
        body.extend_from_slice(&width.to_be_bytes());
        body.push(sampling.len() as u8);
        for (i, s) in sampling.iter().enumerate() {
            body.extend_from_slice(&[i as u8 + 1, *s, 0]);
        }
        body
    }

    #[test]
    fn the_frame_and_the_scan_bytes_are_read() {
        let bytes = file(
            (0xC0, sof(40, 24, &[0x22, 0x11, 0x11])),
            &[&[1, 2, 0xFF, 0x00, 3, 0xFF, 0xD0, 4], &[5]],
        );
        let got = layout(&bytes).unwrap();
        assert_eq!(
            got,
            Layout {
                width: 40,
                height: 24,
                progressive: false,
                sampling: vec![(2, 2), (1, 1), (1, 1)],
                coded_bytes: 9,
                last_scan_end: Some(bytes.len() - 2),
            }
        );
        // luma 5x3 blocks, each chroma 20x12 pixels: 3x2 blocks
        assert_eq!(got.blocks(), 15 + 6 + 6);
        assert_eq!(got.least_coded_bits(), 54);
    }

    #[test]
    fn every_cut_of_a_file_is_refused_as_truncated() {
        let bytes = file((0xC2, sof(16, 16, &[0x11])), &[&[7; 20], &[0xFF, 0, 9]]);
        assert!(layout(&bytes).is_ok());
        for cut in 0..bytes.len() {
            let why = layout(&bytes[..cut]).unwrap_err();
            assert!(
                why.contains("truncated") || why.contains("start-of-image"),
                "{cut}: {why}"
            );
        }
    }

    #[test]
    fn the_sentinel_goes_between_the_last_scan_and_the_end_marker() {
        let bytes = file((0xC0, sof(8, 8, &[0x11])), &[&[1, 2], &[3, 0xFF, 0x00, 4]]);
        let found = layout(&bytes).unwrap();
        let guarded = with_sentinel(&bytes, &found).unwrap();
        let at = bytes.len() - 2;
        assert_eq!(found.last_scan_end, Some(at));
        assert_eq!(&guarded[..at], &bytes[..at]);
        assert_eq!(&guarded[at..at + SENTINEL.len()], &SENTINEL);
        assert_eq!(&guarded[at + SENTINEL.len()..], &[0xFF, 0xD9]);
        // The sentinel reads as data: the walk finds the same scans around it.
        assert_eq!(
            layout(&guarded).unwrap().coded_bytes,
            found.coded_bytes + SENTINEL.len() as u64
        );
        // A segment between the last scan and the end marker: nothing is put in.
        let mut commented = bytes[..at].to_vec();
        commented.extend_from_slice(&[0xFF, 0xFE, 0, 4, b'h', b'i', 0xFF, 0xD9]);
        let found = layout(&commented).unwrap();
        assert_eq!(found.last_scan_end, None);
        assert!(with_sentinel(&commented, &found).is_none());
    }

    #[test]
    fn the_next_ff_is_found_wherever_it_lies() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![0xFEu8; len];
                if at < len {
                    bytes[at] = 0xFF;
                }
                for from in 0..=len + 1 {
                    let want = (at < len && from <= at).then_some(at);
                    assert_eq!(next_ff(&bytes, from), want, "{len} {at} {from}");
                }
            }
        }
    }

    #[test]
    fn bytes_after_the_end_marker_are_not_read() {
        let mut bytes = file((0xC0, sof(8, 8, &[0x11])), &[&[1]]);
        bytes.extend_from_slice(b"trailing junk \xFF\xD8");
        assert_eq!(layout(&bytes).unwrap().coded_bytes, 1);
    }

    #[test]
    fn broken_structure_is_refused_with_the_reason() {
        let frame = (0xC0, sof(8, 8, &[0x11]));
        let mut stray = file(frame.clone(), &[&[1]]);
        stray.insert(2, 0x42);
        assert!(layout(&stray).unwrap_err().contains("byte 2 is 0x42"));
        let no_frame = file((0xFE, b"comment".to_vec()), &[&[1]]);
        assert!(layout(&no_frame).unwrap_err().contains("before the frame"));
        let no_scan = file(frame, &[]);
        assert!(layout(&no_scan).unwrap_err().contains("no scan"));
        let zero = file((0xC0, sof(8, 8, &[0x01])), &[&[1]]);
        assert!(layout(&zero).unwrap_err().contains("sampled 0x1"));
        let lossless = file((0xC3, sof(8, 8, &[0x11])), &[&[1]]);
        assert!(layout(&lossless).unwrap_err().contains("lossless"));
    }

    #[test]
    fn a_header_claiming_more_than_the_bytes_code_is_refused() {
        // 64x64 gray: 64 blocks, 16 bytes sequential (two bits a block), 8 progressive.
        for (marker, need) in [(0xC0u8, 16usize), (0xC2, 8)] {
            let enough = file((marker, sof(64, 64, &[0x11])), &[&vec![1; need]]);
            let size = enough.len();
            assert!(layout(&enough).unwrap().check_coded_bytes(size).is_ok());
            let short = file((marker, sof(64, 64, &[0x11])), &[&vec![1; need - 1]]);
            let why = layout(&short)
                .unwrap()
                .check_coded_bytes(short.len())
                .unwrap_err();
            assert!(
                why.contains(&format!(
                    "claims 64x64 pixels, more than its {} bytes",
                    size - 1
                )),
                "{why}"
            );
        }
        let bomb = file((0xC2, sof(16384, 16384, &[0x22, 0x11, 0x11])), &[&[0; 300]]);
        assert!(layout(&bomb)
            .unwrap()
            .check_coded_bytes(bomb.len())
            .is_err());
    }
}
