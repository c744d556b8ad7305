//! A row-major copy of a table's fixed-width numeric columns, for shuffled reads.
//!
//! Gathering random rows from separate column arrays costs one cache miss per value; from
//! rows laid side by side it costs about one per row. A memory table of many rows builds this
//! block on its first shuffled take of two or more of its columns, and serves those columns
//! from it afterwards, writing them out column after column as the gather always does.

use rayon::prelude::*;

use arrow_array::Array;
use arrow_schema::DataType;

use crate::store::Store;

/// Tables shorter than this fit in cache: their columns are read directly.
pub const MIN_ROWS: u64 = 1 << 16;
/// Rows per parallel task when building or gathering.
const TASK_ROWS: usize = 1 << 14;

#[derive(Debug)]
pub struct RowBlock {
    data: Vec<u64>,
    /// Bytes per row, a multiple of 8.
    stride: usize,
    /// For each store column: `(byte offset within a row, width)` when it is in the block.
    slots: Vec<Option<(usize, usize)>>,
}

/// A column the block can hold: fixed width 1-8 bytes, not bool, no nulls in any chunk.
fn eligible(store: &Store, column: usize) -> Option<usize> {
    let dt = store.schema().field(column).data_type();
    if matches!(dt, DataType::Boolean) || !dt.is_primitive() {
        return None;
    }
    let width = dt.primitive_width()?;
    if !matches!(width, 1 | 2 | 4 | 8) {
        return None;
    }
    let no_nulls = store
        .chunks()
        .iter()
        .all(|b| b.column(column).null_count() == 0);
    no_nulls.then_some(width)
}

/// Free memory as the kernel reports it, when it does.
fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl RowBlock {
    /// Build the block for `store`, or `None` when fewer than two columns qualify, the table is
    /// short, or the block would take more than a quarter of the free memory.
    pub fn build(store: &Store) -> Option<RowBlock> {
        if store.num_rows() < MIN_ROWS {
            return None;
        }
        let fields = store.schema().fields().len();
        let mut cols: Vec<(usize, usize)> = (0..fields)
            .filter_map(|c| eligible(store, c).map(|w| (c, w)))
            .collect();
        if cols.len() < 2 {
            return None;
        }
        // Widest first: every value sits at a multiple of its width.
        cols.sort_by_key(|&(c, w)| (std::cmp::Reverse(w), c));
        let mut slots = vec![None; fields];
        let mut at = 0;
        for &(c, w) in &cols {
            slots[c] = Some((at, w));
            at += w;
        }
        let stride = at.next_multiple_of(8);
        let rows = store.num_rows() as usize;
        let bytes = (rows * stride) as u64;
        if available_bytes().is_some_and(|free| bytes > free / 4) {
            return None;
        }
        let mut data = vec![0u64; rows * stride / 8];
        {
            // SAFETY: a u64 vector viewed as bytes.
            let bytes: &mut [u8] = unsafe {
                std::slice::from_raw_parts_mut(data.as_mut_ptr() as *mut u8, rows * stride)
            };
            let mut start = 0usize;
            let mut jobs = Vec::new();
            let mut rest = bytes;
            for chunk in store.chunks() {
                let n = chunk.num_rows();
                let (mine, tail) = std::mem::take(&mut rest).split_at_mut(n * stride);
                rest = tail;
                for (k, part) in mine.chunks_mut(TASK_ROWS * stride).enumerate() {
                    jobs.push((chunk, k * TASK_ROWS, part));
                }
                start += n;
            }
            debug_assert_eq!(start, rows);
            let fill = |(chunk, first, part): (&arrow_array::RecordBatch, usize, &mut [u8])| {
                let n = part.len() / stride;
                for &(c, w) in &cols {
                    let data = chunk.column(c).to_data();
                    let src = &data.buffers()[0].as_slice()[(data.offset() + first) * w..];
                    let off = slots[c].expect("slot of a block column").0;
                    for i in 0..n {
                        part[i * stride + off..i * stride + off + w]
                            .copy_from_slice(&src[i * w..(i + 1) * w]);
                    }
                }
            };
            if crate::threads::parallel(rows * stride, 1 << 20) {
                jobs.into_par_iter().for_each(fill);
            } else {
                jobs.into_iter().for_each(fill);
            }
        }
        Some(RowBlock {
            data,
            stride,
            slots,
        })
    }

    /// Where column `c` sits in a row, when the block holds it.
    pub fn slot(&self, column: usize) -> Option<(usize, usize)> {
        self.slots.get(column).copied().flatten()
    }

    /// Write rows `rows` (global offsets) of the columns in `outs` (`(row offset, width,
    /// destination)`) into their destinations, row `k` at position `k`.
    pub fn gather(&self, rows: &[u64], outs: &mut [(usize, usize, &mut [u8])], parallel: bool) {
        // SAFETY: the u64 vector viewed as bytes.
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts(self.data.as_ptr() as *const u8, self.data.len() * 8)
        };
        let stride = self.stride;
        if !parallel || rows.len() <= TASK_ROWS {
            gather_rows(bytes, stride, rows, outs);
            return;
        }
        // Split every destination at the same row boundaries and gather the blocks in parallel.
        let mut tasks: Vec<(usize, Vec<(usize, usize, &mut [u8])>)> = Vec::new();
        let mut rests: Vec<(usize, usize, &mut [u8])> = outs
            .iter_mut()
            .map(|(o, w, d)| (*o, *w, &mut **d))
            .collect();
        let mut first = 0;
        while first < rows.len() {
            let n = TASK_ROWS.min(rows.len() - first);
            let mut parts = Vec::with_capacity(rests.len());
            for (o, w, d) in rests.iter_mut() {
                let (mine, tail) = std::mem::take(d).split_at_mut(n * *w);
                *d = tail;
                parts.push((*o, *w, mine));
            }
            tasks.push((first, parts));
            first += n;
        }
        tasks.into_par_iter().for_each(|(first, mut parts)| {
            let n = parts.first().map_or(0, |(_, w, d)| d.len() / w);
            gather_rows(bytes, stride, &rows[first..first + n], &mut parts);
        });
    }
}

#[inline(always)]
fn copy_value<const W: usize>(dst: &mut [u8], k: usize, row: &[u8], off: usize) {
    let v: [u8; W] = row[off..off + W].try_into().expect("slot inside the row");
    dst[k * W..(k + 1) * W].copy_from_slice(&v);
}

fn gather_rows(bytes: &[u8], stride: usize, rows: &[u64], outs: &mut [(usize, usize, &mut [u8])]) {
    const AHEAD: usize = 8;
    for (k, &r) in rows.iter().enumerate() {
        #[cfg(target_arch = "x86_64")]
        if let Some(&next) = rows.get(k + AHEAD) {
            // SAFETY: prefetch is a hint; the address is inside the block.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                let p = bytes.as_ptr().add(next as usize * stride);
                _mm_prefetch(p as *const i8, _MM_HINT_T0);
                if stride > 64 {
                    _mm_prefetch(p.add(64) as *const i8, _MM_HINT_T0);
                }
            }
        }
        let row = &bytes[r as usize * stride..(r as usize + 1) * stride];
        for (off, w, dst) in outs.iter_mut() {
            match *w {
                8 => copy_value::<8>(dst, k, row, *off),
                4 => copy_value::<4>(dst, k, row, *off),
                2 => copy_value::<2>(dst, k, row, *off),
                _ => copy_value::<1>(dst, k, row, *off),
            }
        }
    }
}
