//! The prefetching loader: Rust threads gather the next batches of an epoch and turn them into
//! tensors while Python trains on the current one. Nothing on those threads touches Python.
//!
//! With `threads` producers, producer `w` makes batches `w, w + threads, ...`, each into a
//! channel of its own; the consumer takes batch `k` from channel `k % threads`, so batches
//! arrive in epoch order however the producers race.
//!
//! A batch is one `(columns, rows)` tensor, or with `per_column` one tensor per column
//! (`(rows,)`, or `(rows, size)` for a fixed-size list such as an embedding), each sharing the
//! gather's output unless it needs converting.

use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use arrow_buffer::ScalarBuffer;

use crate::dlpack::HostTensor;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::pool::BufferPool;
use crate::store::Store;
use crate::tensor::{batch_to_tensor, column_to_tensor, NullFill, Share};

/// Nanosecond and count totals, shared by the producing thread and Python.
#[derive(Default)]
struct Stats {
    take_ns: AtomicU64,
    convert_ns: AtomicU64,
    batches: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

/// A prefetcher's totals at one moment.
pub struct Totals {
    pub take_ns: u64,
    pub convert_ns: u64,
    pub batches: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// An epoch's row offsets, in 4 bytes each where the table allows: an epoch's index costs
/// half as much memory beside the table. A uint32 array from Python is kept as it is.
pub enum EpochRows {
    Narrow(ScalarBuffer<u32>),
    Wide(ScalarBuffer<u64>),
}

impl EpochRows {
    /// `offsets` checked against a table of `num_rows` rows.
    pub fn new(offsets: &[i64], num_rows: u64) -> Result<Self> {
        let n = num_rows as i64;
        if let Some(bad) = offsets.iter().find(|&&r| r < 0 || r >= n) {
            return Err(out_of_range(*bad, num_rows));
        }
        Ok(if num_rows <= u64::from(u32::MAX) + 1 {
            EpochRows::Narrow(offsets.iter().map(|&r| r as u32).collect())
        } else {
            EpochRows::Wide(offsets.iter().map(|&r| r as u64).collect())
        })
    }

    /// Row offsets already 4 bytes each (memory shared with Python, not copied), checked
    /// against a table of `num_rows` rows.
    pub fn narrow(rows: ScalarBuffer<u32>, num_rows: u64) -> Result<Self> {
        if let Some(&bad) = rows.iter().find(|&&r| u64::from(r) >= num_rows) {
            return Err(out_of_range(i64::from(bad), num_rows));
        }
        Ok(EpochRows::Narrow(rows))
    }

    fn len(&self) -> usize {
        match self {
            EpochRows::Narrow(v) => v.len(),
            EpochRows::Wide(v) => v.len(),
        }
    }

    /// Positions `range` of the epoch, as the gather takes them, checked again against a
    /// table of `num_rows` rows: memory shared with Python could have changed since `new`.
    fn slice(&self, range: std::ops::Range<usize>, num_rows: u64) -> Result<Vec<u64>> {
        let rows: Vec<u64> = match self {
            EpochRows::Narrow(v) => v[range].iter().map(|&r| u64::from(r)).collect(),
            EpochRows::Wide(v) => v[range].to_vec(),
        };
        match rows.iter().find(|&&r| r >= num_rows) {
            Some(&bad) => Err(Error::RowOutOfRange {
                offset: bad as i64,
                rows: num_rows,
                position: None,
                why: Some(
                    "the offsets changed after the epoch started (do not write into an array \
                     handed to a loader)",
                ),
            }),
            None => Ok(rows),
        }
    }
}

fn out_of_range(offset: i64, num_rows: u64) -> Error {
    Error::RowOutOfRange {
        offset,
        rows: num_rows,
        position: None,
        why: None,
    }
}

/// How an epoch's rows become batches, and the batches tensors: one value, made once (in
/// Python, the `Batching` a Loader passes to every epoch's prefetcher).
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    pub batch_size: usize,
    /// Leave out the last batch when it is shorter than `batch_size`.
    pub drop_last: bool,
    /// The tensors' type (`None`: the columns' common type).
    pub dtype: Option<DType>,
    pub fill: NullFill,
    /// One tensor per column instead of one `(columns, rows)` tensor.
    pub per_column: bool,
}

/// What the thread needs to make one epoch's batches.
pub struct Plan {
    pub store: Arc<Store>,
    /// Row offsets in epoch order, checked against the store.
    pub rows: EpochRows,
    pub columns: Vec<usize>,
    pub batching: Batching,
}

impl Plan {
    /// The tensors of one gathered batch.
    fn tensors(&self, batch: &arrow_array::RecordBatch) -> Result<Vec<HostTensor>> {
        let Batching {
            dtype,
            fill,
            per_column,
            ..
        } = self.batching;
        if per_column {
            // bounded: one a column of a batch held already
            (0..batch.num_columns())
                .map(|i| column_to_tensor(batch, i, dtype, fill, Share::Allowed))
                .collect()
        } else {
            let one = batch_to_tensor(std::slice::from_ref(batch), dtype, fill, Share::Allowed)?;
            Ok(vec![one])
        }
    }

    /// The position ranges of the epoch's batches.
    fn batches(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let (n, size) = (self.rows.len(), self.batching.batch_size);
        let full = n / size;
        let keep_tail = !self.batching.drop_last && n % size != 0;
        (0..full + usize::from(keep_tail)).map(move |k| k * size..((k + 1) * size).min(n))
    }
}

/// What a producer sends for each batch: its tensors, or why it could not make them.
type Made = Result<Vec<HostTensor>>;

fn produce(
    plan: Arc<Plan>,
    (me, threads): (usize, usize),
    stats: Arc<Stats>,
    pool: Arc<BufferPool>,
    send: std::sync::mpsc::SyncSender<Made>,
) {
    for range in plan.batches().skip(me).step_by(threads) {
        let t0 = Instant::now();
        let made = catch_unwind(AssertUnwindSafe(|| make(&plan, range, &pool)));
        let (tensors, t1) = match made {
            Ok(made) => made,
            Err(panic) => {
                let why = crate::error::panic_message(panic.as_ref());
                let failed = Error::Internal(format!(
                    "the prefetch thread failed making a batch ({why}); this is a bug in \
                     lancetorch, please report it"
                ));
                let _ = send.send(Err(failed));
                return;
            }
        };
        let t2 = Instant::now();
        stats
            .take_ns
            .fetch_add((t1 - t0).as_nanos() as u64, Ordering::Relaxed);
        stats
            .convert_ns
            .fetch_add((t2 - t1).as_nanos() as u64, Ordering::Relaxed);
        let failed = tensors.is_err();
        // A closed channel means the consumer stopped: end quietly.
        if send.send(tensors).is_err() || failed {
            return;
        }
    }
}

/// The tensors of the batch at positions `range` of the epoch, and when the take ended.
fn make(plan: &Plan, range: std::ops::Range<usize>, pool: &Arc<BufferPool>) -> (Made, Instant) {
    let rows = match plan.rows.slice(range, plan.store.num_rows()) {
        Ok(rows) => rows,
        Err(e) => return (Err(e), Instant::now()),
    };
    // From the row-major block the tensor is gathered and converted in one pass (counted as
    // take); otherwise a batch is taken, then converted.
    let fused = if plan.batching.per_column {
        None
    } else {
        crate::gather::gather_tensor(
            &plan.store,
            &rows,
            &plan.columns,
            plan.batching.dtype,
            plan.batching.fill,
            Some(pool),
        )
    };
    match fused {
        Some(tensor) => (tensor.map(|t| vec![t]), Instant::now()),
        None => {
            let batch = crate::gather::gather_with(&plan.store, &rows, &plan.columns, Some(pool));
            let t1 = Instant::now();
            (batch.and_then(|b| plan.tensors(&b)), t1)
        }
    }
}

/// One epoch of prefetched batches.
pub struct Prefetcher {
    /// One channel per producer; empty once stopped.
    /// (Not dropped in a forked child: the producers, and any lock of the channels they
    /// held at the fork, stayed in the parent.)
    receivers: ManuallyDrop<Mutex<Vec<Receiver<Made>>>>,
    workers: ManuallyDrop<Mutex<Vec<JoinHandle<()>>>>,
    /// Batches handed out so far: the next comes from channel `next % threads`.
    next: AtomicUsize,
    /// The epoch's batch count: a channel closing before its last one means a lost producer.
    expected: usize,
    /// The process that started the producers: a forked child has none of them.
    pid: u32,
    stats: Arc<Stats>,
    per_column: bool,
    /// Held here too, so that its last reference goes on the Python thread: rows imported
    /// from Python are released there, never by a producer thread waiting for the GIL.
    _plan: Arc<Plan>,
}

impl Prefetcher {
    pub fn start(plan: Plan, depth: usize, threads: usize) -> Result<Self> {
        if plan.batching.batch_size == 0 {
            return Err(Error::Value("batch_size must be 1 or more".into()));
        }
        let threads = threads.max(1);
        let plan = Arc::new(plan);
        let stats = Arc::new(Stats::default());
        let prefetcher = Prefetcher {
            receivers: ManuallyDrop::new(Mutex::new(Vec::new())),
            workers: ManuallyDrop::new(Mutex::new(Vec::new())),
            next: AtomicUsize::new(0),
            expected: plan.batches().count(),
            pid: std::process::id(),
            stats: stats.clone(),
            per_column: plan.batching.per_column,
            _plan: plan.clone(),
        };
        // Each producer runs `depth / threads` batches ahead (at least one).
        let ahead = depth.max(1).div_ceil(threads);
        // Enough buffers for the batches queued, one being made by each thread, and a few
        // the consumer still holds.
        let pool = BufferPool::new((ahead + 1) * threads + 3);
        for me in 0..threads {
            let (send, receive) = sync_channel(ahead);
            let (plan, stats, pool) = (plan.clone(), stats.clone(), pool.clone());
            let worker = std::thread::Builder::new()
                .name(format!("lancetorch-prefetch-{me}"))
                .spawn(move || produce(plan, (me, threads), stats, pool, send))
                .map_err(|e| Error::Value(format!("cannot start a prefetch thread: {e}")))?;
            prefetcher
                .receivers
                .lock()
                .expect("prefetch lock")
                .push(receive);
            prefetcher
                .workers
                .lock()
                .expect("prefetch lock")
                .push(worker);
        }
        Ok(prefetcher)
    }

    /// The next batch in epoch order; `None` at the end (or once stopped). A producer gone
    /// before its last batch is an error.
    pub fn receive(&self) -> Option<Result<Vec<HostTensor>>> {
        let receivers = self.receivers.lock().expect("prefetch lock");
        if receivers.is_empty() {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        match receivers[k % receivers.len()].recv() {
            Ok(batch) => {
                // Counted as handed out, not as made: batches made ahead are not delivered.
                if let Ok(tensors) = &batch {
                    let s = &self.stats;
                    let size = self._plan.batching.batch_size;
                    let rows = ((k + 1) * size).min(self._plan.rows.len()) - k * size;
                    let bytes: u64 = tensors
                        .iter()
                        .map(|t| t.shape().iter().product::<i64>() as u64 * t.dtype().size() as u64)
                        .sum();
                    s.batches.fetch_add(1, Ordering::Relaxed);
                    s.rows.fetch_add(rows as u64, Ordering::Relaxed);
                    s.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Some(batch)
            }
            Err(_) if k < self.expected => Some(Err(Error::Internal(format!(
                "a prefetch thread ended before batch {k} of {}; this is a bug in lancetorch, \
                 please report it",
                self.expected
            )))),
            Err(_) => None,
        }
    }

    /// Whether each batch is a tensor per column.
    pub fn per_column(&self) -> bool {
        self.per_column
    }

    /// Totals so far: nanoseconds in the take and in the conversion, batches, rows, bytes.
    pub fn totals(&self) -> Totals {
        let s = &self.stats;
        Totals {
            take_ns: s.take_ns.load(Ordering::Relaxed),
            convert_ns: s.convert_ns.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            rows: s.rows.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
        }
    }

    /// Whether this is a forked child of the process that started the producers.
    pub fn inherited(&self) -> bool {
        std::process::id() != self.pid
    }

    pub fn stop(&self) {
        if self.inherited() {
            // The producers stayed in the parent: nothing to stop or join here.
            return;
        }
        // Dropping the receivers makes each producer's next send fail, so they end.
        self.receivers.lock().expect("prefetch lock").clear();
        for worker in self.workers.lock().expect("prefetch lock").drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        if self.inherited() {
            return; // the channels and the threads' handles are left as they are (leaked)
        }
        self.stop();
        // SAFETY: dropped once, here, and not used after.
        unsafe {
            ManuallyDrop::drop(&mut self.receivers);
            ManuallyDrop::drop(&mut self.workers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    fn plan(n: i64, batch_size: usize, drop_last: bool) -> Plan {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()))],
        )
        .unwrap();
        Plan {
            store: Arc::new(Store::new(schema, vec![batch]).unwrap()),
            rows: EpochRows::new(&(0..n).rev().collect::<Vec<_>>(), n as u64).unwrap(),
            columns: vec![0],
            batching: Batching {
                batch_size,
                drop_last,
                dtype: None,
                fill: None,
                per_column: false,
            },
        }
    }

    fn drain(p: Prefetcher) -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        while let Some(t) = p.receive() {
            let t = t.unwrap().pop().unwrap();
            let n = t.shape().iter().product::<i64>() as usize;
            out.push(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const i64, n).to_vec() });
        }
        out
    }

    #[test]
    fn every_row_once_in_order_with_or_without_the_tail() {
        for threads in [1, 2, 3, 5] {
            let got = drain(Prefetcher::start(plan(10, 4, false), 2, threads).unwrap());
            assert_eq!(got, vec![vec![9, 8, 7, 6], vec![5, 4, 3, 2], vec![1, 0]]);
            let got = drain(Prefetcher::start(plan(10, 4, true), 2, threads).unwrap());
            assert_eq!(got, vec![vec![9, 8, 7, 6], vec![5, 4, 3, 2]]);
        }
        let got = drain(Prefetcher::start(plan(1000, 3, false), 4, 3).unwrap());
        let want: Vec<Vec<i64>> = (0..1000)
            .rev()
            .collect::<Vec<_>>()
            .chunks(3)
            .map(|c| c.to_vec())
            .collect();
        assert_eq!(got, want, "in epoch order whichever producer is ahead");
    }

    #[test]
    fn per_column_batches_keep_each_column_shape() {
        use arrow_array::{FixedSizeListArray, Float32Array};
        let n = 10i64;
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("emb", DataType::FixedSizeList(item.clone(), 3), false),
            Field::new("id", DataType::Int64, false),
        ]));
        let values = Float32Array::from_iter_values((0..3 * n).map(|v| v as f32));
        let emb = FixedSizeListArray::new(item, 3, Arc::new(values), None);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(emb), Arc::new(Int64Array::from_iter_values(0..n))],
        )
        .unwrap();
        let plan = Plan {
            store: Arc::new(Store::new(schema, vec![batch]).unwrap()),
            rows: EpochRows::new(&[7, 2, 9, 0], 10).unwrap(),
            columns: vec![0, 1],
            batching: Batching {
                batch_size: 3,
                drop_last: false,
                dtype: None,
                fill: None,
                per_column: true,
            },
        };
        let p = Prefetcher::start(plan, 2, 2).unwrap();
        let mut got = Vec::new();
        while let Some(ts) = p.receive() {
            let ts = ts.unwrap();
            assert_eq!(ts.len(), 2);
            let rows = ts[1].shape()[0];
            assert_eq!(ts[0].shape(), &[rows, 3]);
            assert_eq!(ts[1].shape(), &[rows]);
            // SAFETY: float32 (rows, 3) and int64 (rows,) tensors of the gather's output.
            let emb = unsafe {
                std::slice::from_raw_parts(ts[0].data_ptr() as *const f32, 3 * rows as usize)
            };
            let ids = unsafe {
                std::slice::from_raw_parts(ts[1].data_ptr() as *const i64, rows as usize)
            };
            for (k, &id) in ids.iter().enumerate() {
                let want: Vec<f32> = (0..3).map(|j| (3 * id + j) as f32).collect();
                assert_eq!(&emb[3 * k..3 * k + 3], want.as_slice());
            }
            got.extend_from_slice(ids);
        }
        assert_eq!(got, vec![7, 2, 9, 0]);
    }

    #[test]
    fn a_producer_gone_before_its_last_batch_is_an_error_not_the_end() {
        let plan = Arc::new(plan(10, 5, false)); // two batches
        let (send, receive) = sync_channel(1);
        send.send(Ok(Vec::new())).unwrap();
        drop(send); // the producer ends after one batch
        let p = Prefetcher {
            receivers: ManuallyDrop::new(Mutex::new(vec![receive])),
            workers: ManuallyDrop::new(Mutex::new(Vec::new())),
            next: AtomicUsize::new(0),
            expected: plan.batches().count(),
            pid: std::process::id(),
            stats: Arc::new(Stats::default()),
            per_column: false,
            _plan: plan,
        };
        assert!(matches!(p.receive(), Some(Ok(_))));
        let err = p.receive().expect("an error").unwrap_err().to_string();
        assert!(err.contains("ended before batch 1 of 2"), "{err}");
    }

    #[test]
    fn stopping_early_ends_the_threads() {
        for threads in [1, 2] {
            let p = Prefetcher::start(plan(100_000, 10, false), 1, threads).unwrap();
            p.stop(); // joins: would hang if a producer could not see the consumer leave
            assert!(p.workers.lock().unwrap().is_empty());
            assert!(p.receive().is_none());
        }
    }

    #[test]
    fn rows_are_checked_and_kept_narrow_where_they_fit() {
        for bad in [&[0, 5][..], &[-1]] {
            let err = EpochRows::new(bad, 5).err().expect("refused").to_string();
            assert!(
                err.contains(&format!("row offset {}", bad[bad.len() - 1])),
                "{err}"
            );
        }
        let offsets = [4i64, 0, 3, 3];
        let narrow = EpochRows::new(&offsets, 5).unwrap();
        assert!(matches!(narrow, EpochRows::Narrow(_)));
        let wide = EpochRows::new(&offsets, 1 << 33).unwrap();
        assert!(matches!(wide, EpochRows::Wide(_)));
        for rows in [narrow, wide] {
            assert_eq!(rows.len(), 4);
            assert_eq!(rows.slice(1..4, 5).unwrap(), vec![0, 3, 3]);
            // Checked again when read: a table smaller than the offsets is refused.
            let err = rows.slice(0..2, 4).unwrap_err().to_string();
            assert!(err.contains("row offset 4 is out of range"), "{err}");
        }
    }
}
