//! Tests on real files with real fsyncs, in temporary directories.

use super::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc;
use std::time::Instant;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        max_record_bytes: 4096,
        // The byte-level tests below assume the file ends at its last frame;
        // the `preallocated_*` tests cover zero-filled segments.
        preallocate_bytes: 0,
    }
}

/// Deterministic payload of varying length (0..=28 filler bytes).
fn payload(i: u64) -> Vec<u8> {
    let mut v = format!("rec-{i}-").into_bytes();
    v.extend(std::iter::repeat_n((i % 251) as u8, (i * 7 % 29) as usize));
    v
}

fn batch(lo: u64, hi: u64) -> Vec<(u64, Vec<u8>)> {
    (lo..=hi).map(|i| (i, payload(i))).collect()
}

fn check(wal: &Wal, lo: u64, hi: u64) -> TestResult {
    let got = wal.entries(lo..=hi)?;
    assert_eq!(got, batch(lo, hi), "entries {lo}..={hi}");
    Ok(())
}

fn seg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(segment::parse_file_name)
                        .is_some()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn file_name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Frame positions of the records of the last segment (from the index).
fn last_segment_frames(wal: &Wal) -> (PathBuf, u64, Vec<Frame>) {
    let ix = wal.read_index();
    let s = &ix.segments[ix.segments.len() - 1];
    (s.path.clone(), s.first, s.frames.clone())
}

fn copy_dir(from: &Path, to: &Path) -> TestResult {
    for e in fs::read_dir(from)? {
        let e = e?;
        fs::copy(e.path(), to.join(e.file_name()))?;
    }
    Ok(())
}

fn flip_byte(path: &Path, offset: u64) -> TestResult {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 0x5a;
    f.write_all_at(&b, offset)?;
    Ok(())
}

fn expect_corrupt(dir: &Path, o: WalOptions, file: &Path) -> TestResult {
    match Wal::open(dir, o) {
        Ok(_) => panic!("open must fail"),
        Err(e) => {
            let msg = e.to_string();
            assert!(matches!(e, WalError::Corrupt { .. }), "{msg}");
            assert!(msg.contains(&file_name_of(file)), "{msg}");
            let io: io::Error = e.into();
            assert_eq!(io.kind(), io::ErrorKind::InvalidData);
        }
    }
    Ok(())
}

/// Small xorshift so the tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn wal_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Wal>();
    assert_send_sync::<Arc<Wal>>();
}

#[test]
fn roundtrip_across_rollover_and_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("wal");
    {
        let wal = Wal::open(&dir, opts(200))?;
        assert_eq!(wal.bounds(), LogBounds::default());
        assert_eq!(wal.entries(..)?, vec![]);
        // batches of varying sizes, some spanning several segments
        let mut next = 1;
        for size in [1, 5, 17, 2, 40, 1, 34] {
            wal.append_sync(batch(next, next + size - 1))?;
            next += size;
        }
        assert_eq!(wal.first_index(), Some(1));
        assert_eq!(wal.last_index(), Some(100));
        check(&wal, 1, 100)?;
        check(&wal, 37, 38)?;
        assert_eq!(wal.entries(95..)?, batch(95, 100));
        assert_eq!(wal.entries(..3)?, batch(1, 2));
        assert_eq!(
            wal.entries((Bound::Excluded(98), Bound::Unbounded))?,
            batch(99, 100)
        );
        assert_eq!(wal.entries(101..200)?, vec![]);
        assert_eq!(wal.entries(0..1)?, vec![]);
        assert_eq!(wal.entry(50)?, Some(payload(50)));
        assert_eq!(wal.entry(0)?, None);
        let st = wal.stats();
        assert_eq!((st.appends, st.records), (7, 100));
        assert!(st.segments_created > 10, "{st:?}");
        assert_eq!(seg_files(&dir).len() as u64, st.segments_created);
        // every segment except one with a single huge record respects the limit
        for f in seg_files(&dir) {
            assert!(fs::metadata(&f)?.len() <= 200, "{}", f.display());
        }
    }
    let wal = Wal::open(&dir, opts(200))?;
    assert_eq!(
        wal.bounds(),
        LogBounds {
            first: Some(1),
            last: Some(100),
            // the log started at 1, above the floor 0: see "Append rule"
            purged: Some(0)
        }
    );
    check(&wal, 1, 100)?;
    wal.append_sync(batch(101, 120))?;
    drop(wal);
    let wal = Wal::open(&dir, opts(200))?;
    check(&wal, 1, 120)?;
    Ok(())
}

#[test]
fn first_append_may_start_anywhere_and_big_records_get_own_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(100))?;
    let big = vec![7u8; 1000];
    wal.append_sync([(42u64, big.clone()), (43, big.clone())])?;
    assert_eq!(
        wal.bounds(),
        LogBounds {
            first: Some(42),
            last: Some(43),
            purged: Some(41)
        }
    );
    assert_eq!(seg_files(tmp.path()).len(), 2);
    drop(wal);
    let wal = Wal::open(tmp.path(), opts(100))?;
    assert_eq!(wal.entries(..)?, vec![(42, big.clone()), (43, big)]);
    Ok(())
}

#[test]
fn log_starting_at_zero_has_no_purge_point() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(150))?;
    wal.append_sync(batch(0, 30))?;
    drop(wal);
    let wal = Wal::open(tmp.path(), opts(150))?;
    assert_eq!(
        wal.bounds(),
        LogBounds {
            first: Some(0),
            last: Some(30),
            purged: None
        }
    );
    check(&wal, 0, 30)?;
    drop(wal);
    // without a purge point the log must start at 0: a lost first segment is detected
    let segs = seg_files(tmp.path());
    fs::remove_file(&segs[0])?;
    expect_corrupt(tmp.path(), opts(150), &segs[1])?;
    Ok(())
}

#[test]
fn append_validation_errors_leave_log_untouched() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(4096))?;
    wal.append_sync(batch(1, 3))?;
    let e = wal.append(batch(5, 6), |_| {});
    assert!(
        matches!(
            e,
            Err(WalError::NonContiguous {
                expected: 4,
                got: 5
            })
        ),
        "{e:?}"
    );
    let e = wal.append(batch(3, 4), |_| {});
    assert!(
        matches!(
            e,
            Err(WalError::NonContiguous {
                expected: 4,
                got: 3
            })
        ),
        "{e:?}"
    );
    let e = wal.append([(4u64, vec![1u8]), (6, vec![2u8])], |_| {});
    assert!(
        matches!(
            e,
            Err(WalError::NonContiguous {
                expected: 5,
                got: 6
            })
        ),
        "{e:?}"
    );
    let e = wal.append([(4u64, vec![0u8; 4097])], |_| {});
    assert!(
        matches!(
            e,
            Err(WalError::RecordTooLarge {
                index: 4,
                len: 4097,
                max: 4096
            })
        ),
        "{e:?}"
    );
    assert_eq!(
        io::Error::from(WalError::IndexOverflow).kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(wal.last_index(), Some(3));
    // not poisoned by validation errors
    wal.append_sync([(4u64, vec![0u8; 4096])])?;
    // an empty batch completes once earlier appends are durable
    let (tx, rx) = mpsc::channel();
    wal.append(Vec::<(u64, Vec<u8>)>::new(), move |r| {
        let _ = tx.send(r.is_ok());
    })?;
    assert!(rx.recv()?);
    assert!(matches!(
        Wal::open(tmp.path().join("x"), opts(10)),
        Err(WalError::InvalidOptions(_))
    ));
    Ok(())
}

#[test]
fn group_commit_concurrent_appenders() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Arc::new(Wal::open(tmp.path(), WalOptions::default())?);
    let next = Arc::new(Mutex::new(1u64));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (threads, per_thread) = (16u64, 40u64);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (wal, next, order) = (wal.clone(), next.clone(), order.clone());
            thread::spawn(move || -> std::result::Result<(), String> {
                for _ in 0..per_thread {
                    let (tx, rx) = mpsc::channel();
                    {
                        // The index must be picked and appended atomically.
                        let mut g = next.lock().map_err(|e| e.to_string())?;
                        let i = *g;
                        let order = order.clone();
                        wal.append([(i, payload(i))], move |r| {
                            if let Ok(mut o) = order.lock() {
                                o.push(i);
                            }
                            let _ = tx.send(r.map_err(|e| e.to_string()));
                        })
                        .map_err(|e| e.to_string())?;
                        *g += 1;
                    }
                    rx.recv().map_err(|e| e.to_string())??;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "thread panicked")??;
    }
    let n = threads * per_thread;
    let order = order.lock().map_err(|e| e.to_string())?.clone();
    assert_eq!(order, (1..=n).collect::<Vec<_>>(), "callbacks out of order");
    let st = wal.stats();
    println!(
        "group commit: {} appends, {} fdatasyncs",
        st.appends, st.syncs
    );
    assert_eq!(st.appends, n);
    assert!(st.syncs * 2 <= n, "too many syncs: {st:?}");
    check(&wal, 1, n)?;
    Ok(())
}

#[test]
fn pipelined_appends_fire_in_order_with_few_syncs() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(8192))?;
    let fired = Arc::new(Mutex::new(Vec::new()));
    for i in 1..=2000u64 {
        let fired = fired.clone();
        wal.append([(i, payload(i))], move |r| {
            if let Ok(mut f) = fired.lock() {
                f.push((i, r.is_ok()));
            }
        })?;
        // readable immediately, before durability
        assert_eq!(wal.entry(i)?, Some(payload(i)));
    }
    wal.sync()?;
    drop(wal); // joins the flusher: every callback has run
    let fired = fired.lock().map_err(|e| e.to_string())?.clone();
    assert_eq!(fired, (1..=2000).map(|i| (i, true)).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn reads_run_concurrently_with_appends_and_purges() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Arc::new(Wal::open(tmp.path(), opts(512))?);
    wal.append_sync(batch(1, 10))?;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (wal, stop) = (wal.clone(), stop.clone());
            thread::spawn(move || -> std::result::Result<u64, String> {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let got = wal.entries(..).map_err(|e| e.to_string())?;
                    for w in got.windows(2) {
                        if w[1].0 != w[0].0 + 1 {
                            return Err(format!("hole between {} and {}", w[0].0, w[1].0));
                        }
                    }
                    for (i, d) in &got {
                        if *d != payload(*i) {
                            return Err(format!("bad payload for {i}"));
                        }
                    }
                    reads += 1;
                }
                Ok(reads)
            })
        })
        .collect();
    for lo in (11..2000u64).step_by(10) {
        wal.append(batch(lo, lo + 9), |_| {})?;
        if lo % 200 == 1 {
            wal.purge(lo - 50)?;
        }
    }
    wal.sync()?;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let reads = r.join().map_err(|_| "reader panicked")??;
        assert!(reads > 0);
    }
    check(&wal, wal.first_index().unwrap_or(0), 2000)?;
    Ok(())
}

#[test]
fn truncate_in_middle_of_segment_then_append_and_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(4096))?;
    wal.append_sync(batch(1, 30))?;
    assert_eq!(seg_files(tmp.path()).len(), 1);
    wal.truncate(21)?;
    assert_eq!(wal.last_index(), Some(20));
    assert_eq!(wal.entries(15..)?, batch(15, 20));
    let e = wal.append(batch(22, 22), |_| {});
    assert!(matches!(
        e,
        Err(WalError::NonContiguous { expected: 21, .. })
    ));
    let other: Vec<(u64, Vec<u8>)> = (21..=25)
        .map(|i| (i, format!("new-{i}").into_bytes()))
        .collect();
    wal.append_sync(other.clone())?;
    // truncating past the end is a no-op
    wal.truncate(100)?;
    drop(wal);
    let wal = Wal::open(tmp.path(), opts(4096))?;
    check(&wal, 1, 20)?;
    assert_eq!(wal.entries(21..)?, other);
    Ok(())
}

#[test]
fn truncate_across_segments_then_append_and_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = opts(150);
    let wal = Wal::open(tmp.path(), o.clone())?;
    wal.append_sync(batch(1, 60))?;
    let before = seg_files(tmp.path()).len();
    assert!(before > 5);
    // pick an index in the middle of an early segment
    let (seg_first, seg_len) = {
        let ix = wal.read_index();
        (ix.segments[2].first, ix.segments[2].frames.len() as u64)
    };
    assert!(seg_len >= 2, "segments should hold several records");
    let from = seg_first + 1;
    wal.truncate(from)?;
    assert_eq!(wal.last_index(), Some(from - 1));
    assert_eq!(seg_files(tmp.path()).len(), 3, "later segments unlinked");
    wal.append_sync(batch(from, 70))?;
    // truncate exactly at a segment's first index: that segment is emptied
    let first_of_last = wal
        .read_index()
        .segments
        .last()
        .map(|s| s.first)
        .unwrap_or(0);
    wal.truncate(first_of_last)?;
    assert_eq!(wal.last_index(), Some(first_of_last - 1));
    wal.append_sync(batch(first_of_last, 80))?;
    drop(wal);
    let wal = Wal::open(tmp.path(), o.clone())?;
    check(&wal, 1, 80)?;
    // truncate everything, then append at the same index
    wal.truncate(1)?;
    assert_eq!((wal.first_index(), wal.last_index()), (None, None));
    assert_eq!(seg_files(tmp.path()).len(), 1);
    drop(wal);
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!((wal.first_index(), wal.last_index()), (None, None));
    wal.append_sync(batch(1, 5))?;
    // an empty log accepts any index above the purge point
    wal.truncate(1)?;
    wal.append_sync(batch(7, 9))?;
    assert_eq!(wal.purged_index(), Some(6));
    drop(wal);
    let wal = Wal::open(tmp.path(), o)?;
    check(&wal, 7, 9)?;
    assert_eq!(wal.first_index(), Some(7));
    Ok(())
}

#[test]
fn purge_then_reopen() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = opts(150);
    let wal = Wal::open(tmp.path(), o.clone())?;
    wal.append_sync(batch(1, 60))?;
    let before = seg_files(tmp.path()).len();
    wal.purge(25)?;
    assert_eq!(
        wal.bounds(),
        LogBounds {
            first: Some(26),
            last: Some(60),
            purged: Some(25)
        }
    );
    assert_eq!(wal.entries(..)?, batch(26, 60));
    assert_eq!(wal.entry(25)?, None);
    assert!(
        seg_files(tmp.path()).len() < before,
        "dead segments unlinked"
    );
    // purging below the purge point is a no-op
    wal.purge(10)?;
    assert_eq!(wal.purged_index(), Some(25));
    // truncating at or below the purge point empties the live log
    drop(wal);
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(wal.first_index(), Some(26));
    assert_eq!(wal.entries(..)?, batch(26, 60));
    wal.truncate(3)?;
    assert_eq!(wal.bounds().last, None);
    // An append to the empty log at the purge point lowers the purge point.
    wal.append_sync(batch(25, 25))?;
    assert_eq!(wal.purged_index(), Some(24));
    wal.append_sync(batch(26, 30))?;
    drop(wal);
    let wal = Wal::open(tmp.path(), o)?;
    assert_eq!(wal.entries(..)?, batch(25, 30));
    Ok(())
}

#[test]
fn purge_past_end_then_append() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = opts(150);
    let wal = Wal::open(tmp.path(), o.clone())?;
    wal.append_sync(batch(1, 20))?;
    wal.purge(100)?;
    assert_eq!(
        wal.bounds(),
        LogBounds {
            first: None,
            last: None,
            purged: Some(100)
        }
    );
    assert_eq!(wal.entries(..)?, vec![]);
    // reopen while empty-but-purged
    drop(wal);
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(wal.bounds().purged, Some(100));
    assert_eq!(wal.last_index(), None);
    wal.append_sync(batch(101, 110))?;
    assert_eq!(
        file_name_of(&seg_files(tmp.path())[0]),
        segment::file_name(101),
        "old segments replaced"
    );
    drop(wal);
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(wal.entries(..)?, batch(101, 110));
    assert_eq!(wal.first_index(), Some(101));
    // purge exactly at the end: the next append continues the active segment
    wal.purge(110)?;
    wal.append_sync(batch(111, 112))?;
    // purge past the end then start higher than purge+1: purge point moves up
    wal.purge(200)?;
    wal.append_sync(batch(205, 206))?;
    assert_eq!(wal.purged_index(), Some(204));
    drop(wal);
    let wal = Wal::open(tmp.path(), o)?;
    assert_eq!(
        wal.bounds(),
        LogBounds {
            first: Some(205),
            last: Some(206),
            purged: Some(204)
        }
    );
    check(&wal, 205, 206)?;
    Ok(())
}

#[test]
fn purge_on_fresh_log_then_append() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(150))?;
    wal.purge(9)?;
    wal.append_sync(batch(10, 12))?;
    drop(wal);
    let wal = Wal::open(tmp.path(), opts(150))?;
    check(&wal, 10, 12)?;
    assert_eq!(wal.bounds().purged, Some(9));
    Ok(())
}

/// Builds a log 1..=n in `dir` and returns (last segment path, frames of it).
fn build_template(
    dir: &Path,
    o: &WalOptions,
    n: u64,
) -> std::result::Result<(PathBuf, Vec<Frame>), Box<dyn std::error::Error>> {
    let wal = Wal::open(dir, o.clone())?;
    wal.append_sync(batch(1, n))?;
    let (path, _, frames) = last_segment_frames(&wal);
    Ok((path, frames))
}

/// After a tail cut that lost record `n`: records `1..n` are intact, a new
/// record `n` can be appended, and both survive a reopen.
fn replace_last_and_reopen(wal: Wal, dir: &Path, o: &WalOptions, n: u64) -> TestResult {
    check(&wal, 1, n - 1)?;
    wal.append_sync([(n, b"replacement".to_vec())])?;
    drop(wal);
    let wal = Wal::open(dir, o.clone())?;
    assert_eq!(wal.entry(n)?, Some(b"replacement".to_vec()));
    check(&wal, 1, n - 1)
}

#[test]
fn torn_tail_at_every_offset_is_cut() -> TestResult {
    let template = tempfile::tempdir()?;
    let o = opts(200);
    let n = 40;
    let (last_seg, frames) = build_template(template.path(), &o, n)?;
    let last = frames[frames.len() - 1];
    let seg_name = file_name_of(&last_seg);
    for cut in last.offset..last.offset + u64::from(last.len) {
        let tmp = tempfile::tempdir()?;
        copy_dir(template.path(), tmp.path())?;
        let seg = tmp.path().join(&seg_name);
        OpenOptions::new().write(true).open(&seg)?.set_len(cut)?;
        let wal = Wal::open(tmp.path(), o.clone())?;
        assert_eq!(wal.last_index(), Some(n - 1), "cut at {cut}");
        assert_eq!(
            fs::metadata(&seg)?.len(),
            last.offset,
            "tail cut at the record start"
        );
        replace_last_and_reopen(wal, tmp.path(), &o, n)?;
    }
    Ok(())
}

#[test]
fn preallocated_segments_are_zero_filled_ahead_and_trimmed_when_rotated() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = preallocated(2048, 300);
    let wal = Wal::open(tmp.path(), o.clone())?;
    let mut zero_filled_ahead = 0;
    for i in 1..=200 {
        wal.append_sync(batch(i, i))?;
        let (path, _, frames) = last_segment_frames(&wal);
        let end = frames.last().map_or(HEADER_LEN as u64, |f| f.end());
        let bytes = fs::read(&path)?;
        assert!(
            bytes.len() as u64 >= end,
            "record {i}: file shorter than its frames"
        );
        if bytes.len() as u64 > end {
            zero_filled_ahead += 1;
        }
        assert!(
            bytes.len() as u64 <= o.segment_bytes.max(end),
            "record {i}: zero-filled past the segment size"
        );
        assert!(
            bytes[end as usize..].iter().all(|&b| b == 0),
            "record {i}: space after the last frame is not zero"
        );
    }
    assert!(
        zero_filled_ahead > 150,
        "zero-filled ahead after {zero_filled_ahead} of 200 appends"
    );
    let segs = seg_files(tmp.path());
    assert!(segs.len() > 3, "{} segments", segs.len());
    drop(wal);
    assert_rotated_segments_trimmed(tmp.path())?;
    // After a reopen (the active segment's zero-filled space is recovered as
    // such), appends go on and roll over, and rotation still trims.
    let wal = Wal::open(tmp.path(), o.clone())?;
    check(&wal, 1, 200)?;
    wal.append_sync(batch(201, 330))?;
    drop(wal);
    assert!(seg_files(tmp.path()).len() > segs.len());
    assert_rotated_segments_trimmed(tmp.path())?;
    let wal = Wal::open(tmp.path(), o)?;
    check(&wal, 1, 330)?;
    Ok(())
}

/// Every segment but the last ends at its last frame.
fn assert_rotated_segments_trimmed(dir: &Path) -> TestResult {
    let segs = seg_files(dir);
    for seg in &segs[..segs.len() - 1] {
        assert_eq!(
            fs::metadata(seg)?.len(),
            frames_end(seg)?,
            "{} was not trimmed when rotated out",
            seg.display()
        );
    }
    Ok(())
}

#[test]
fn preallocated_never_synced_sector_cuts_the_tail_even_before_valid_frames() -> TestResult {
    // After a power loss, a sector of an unsynced append can still read as
    // the zeros it overwrote while a later sector reached the disk.
    let template = tempfile::tempdir()?;
    let o = preallocated(64 * 1024, 4096);
    let n = 200;
    let (seg, frames) = build_template(template.path(), &o, n)?;
    let sector = 512u64;
    let zeroed = (frames[n as usize / 2].offset / sector + 1) * sector;
    let hit = frames
        .iter()
        .position(|f| f.end() > zeroed)
        .expect("the template reaches past the zeroed sector");
    assert!(
        hit + 5 < frames.len(),
        "valid frames follow the zeroed sector"
    );
    let tmp = tempfile::tempdir()?;
    copy_dir(template.path(), tmp.path())?;
    let seg = tmp.path().join(file_name_of(&seg));
    OpenOptions::new()
        .write(true)
        .open(&seg)?
        .write_all_at(&[0; 512], zeroed)?;
    let wal = Wal::open(tmp.path(), o.clone())?;
    let kept = hit as u64; // records 1..=hit are whole
    assert_eq!(wal.last_index(), Some(kept));
    check(&wal, 1, kept)?;
    wal.append_sync(batch(kept + 1, kept + 3))?;
    drop(wal);
    let wal = Wal::open(tmp.path(), o)?;
    check(&wal, 1, kept + 3)?;
    Ok(())
}

#[test]
fn preallocated_torn_tail_at_every_offset_is_cut() -> TestResult {
    let template = tempfile::tempdir()?;
    let o = preallocated(4096, 1024);
    let n = 20;
    let (last_seg, frames) = build_template(template.path(), &o, n)?;
    let last = frames[frames.len() - 1];
    let seg_name = file_name_of(&last_seg);
    let file_len = fs::metadata(&last_seg)?.len();
    assert!(file_len > last.end(), "the template is not preallocated");
    // A crash leaves a prefix of the last record's bytes and zeros (the
    // preallocated content) after it.
    for kept in 0..u64::from(last.len) {
        let tmp = tempfile::tempdir()?;
        copy_dir(template.path(), tmp.path())?;
        let seg = tmp.path().join(&seg_name);
        let zeros = vec![0; (last.end() - last.offset - kept) as usize];
        OpenOptions::new()
            .write(true)
            .open(&seg)?
            .write_all_at(&zeros, last.offset + kept)?;
        let wal = Wal::open(tmp.path(), o.clone())?;
        assert_eq!(wal.last_index(), Some(n - 1), "{kept} bytes kept");
        replace_last_and_reopen(wal, tmp.path(), &o, n)?;
    }
    Ok(())
}

#[test]
fn corrupt_last_record_is_cut_off() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = opts(4096);
    let (seg, frames) = build_template(tmp.path(), &o, 20)?;
    let last = frames[frames.len() - 1];
    flip_byte(&seg, last.offset + 18)?; // inside the data
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(wal.last_index(), Some(19));
    assert_eq!(fs::metadata(&seg)?.len(), last.offset);
    wal.append_sync(batch(20, 21))?;
    check(&wal, 1, 21)?;
    // garbage (not a record) appended after the last record is cut too
    drop(wal);
    let len = fs::metadata(&seg)?.len();
    OpenOptions::new()
        .append(true)
        .open(&seg)?
        .write_all(&[0xab; 5])?;
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(fs::metadata(&seg)?.len(), len);
    check(&wal, 1, 21)?;
    // zeros (as some file systems leave after a crash, or preallocation):
    // the clean end of the log, left in place and overwritten by appends
    drop(wal);
    OpenOptions::new()
        .append(true)
        .open(&seg)?
        .write_all(&[0; 100])?;
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(fs::metadata(&seg)?.len(), len + 100);
    check(&wal, 1, 21)?;
    wal.append_sync(batch(22, 22))?;
    drop(wal);
    let wal = Wal::open(tmp.path(), o)?;
    check(&wal, 1, 22)?;
    Ok(())
}

#[test]
fn corrupt_record_followed_by_good_data_is_hard_error() -> TestResult {
    // in the last segment, middle record: payload byte
    let tmp = tempfile::tempdir()?;
    let o = opts(4096);
    let (seg, frames) = build_template(tmp.path(), &o, 20)?;
    assert_eq!(seg_files(tmp.path()).len(), 1);
    let before = fs::metadata(&seg)?.len();
    flip_byte(&seg, frames[10].offset + 17)?;
    expect_corrupt(tmp.path(), o.clone(), &seg)?;
    assert_eq!(
        fs::metadata(&seg)?.len(),
        before,
        "nothing cut on a hard error"
    );

    // in the last segment, middle record: length field made huge
    let tmp = tempfile::tempdir()?;
    let (seg, frames) = build_template(tmp.path(), &o, 20)?;
    let f = OpenOptions::new().write(true).open(&seg)?;
    f.write_all_at(&u32::MAX.to_le_bytes(), frames[5].offset)?;
    expect_corrupt(tmp.path(), o.clone(), &seg)?;

    // in a non-last segment, its last record
    let tmp = tempfile::tempdir()?;
    let small = opts(150);
    build_template(tmp.path(), &small, 40)?;
    let segs = seg_files(tmp.path());
    assert!(segs.len() > 3);
    let target = &segs[1];
    let len = fs::metadata(target)?.len();
    flip_byte(target, len - 2)?;
    expect_corrupt(tmp.path(), small.clone(), target)?;

    // a torn (short) non-last segment
    let tmp = tempfile::tempdir()?;
    build_template(tmp.path(), &small, 40)?;
    let segs = seg_files(tmp.path());
    let len = fs::metadata(&segs[1])?.len();
    OpenOptions::new()
        .write(true)
        .open(&segs[1])?
        .set_len(len - 3)?;
    expect_corrupt(tmp.path(), small.clone(), &segs[1])?;

    // a missing first segment (records 1.. missing after purge point 0)
    let tmp = tempfile::tempdir()?;
    build_template(tmp.path(), &small, 40)?;
    let segs = seg_files(tmp.path());
    fs::remove_file(&segs[0])?;
    expect_corrupt(tmp.path(), small.clone(), &segs[1])?;

    // a missing segment in the middle (gap)
    let tmp = tempfile::tempdir()?;
    build_template(tmp.path(), &small, 40)?;
    let segs = seg_files(tmp.path());
    fs::remove_file(&segs[2])?;
    expect_corrupt(tmp.path(), small.clone(), &segs[3])?;

    // a bad segment header
    let tmp = tempfile::tempdir()?;
    build_template(tmp.path(), &small, 40)?;
    let segs = seg_files(tmp.path());
    flip_byte(&segs[1], 3)?;
    expect_corrupt(tmp.path(), small.clone(), &segs[1])?;

    // a segment renamed so that its name disagrees with its header
    let tmp = tempfile::tempdir()?;
    build_template(tmp.path(), &small, 40)?;
    let segs = seg_files(tmp.path());
    let last = &segs[segs.len() - 1];
    let renamed = tmp.path().join(segment::file_name(1000));
    fs::rename(last, &renamed)?;
    expect_corrupt(tmp.path(), small, &renamed)?;
    Ok(())
}

#[test]
fn lowered_record_limit_is_a_hard_error_not_a_cut() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (seg, _) = build_template(tmp.path(), &opts(4096), 5)?;
    {
        let wal = Wal::open(tmp.path(), opts(4096))?;
        wal.append_sync([(6u64, vec![1u8; 1000])])?;
    }
    let len = fs::metadata(&seg)?.len();
    let small = WalOptions {
        max_record_bytes: 100,
        ..opts(4096)
    };
    expect_corrupt(tmp.path(), small, &seg)?;
    assert_eq!(fs::metadata(&seg)?.len(), len);
    Ok(())
}

#[test]
fn incomplete_new_segment_and_empty_trailing_segment() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = opts(150);
    build_template(tmp.path(), &o, 10)?;
    // a crash right after creating the next segment file, before its header
    let stray = tmp.path().join(segment::file_name(11));
    fs::write(&stray, [0u8; 7])?;
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert!(!stray.exists());
    check(&wal, 1, 10)?;
    drop(wal);
    // an empty (header only) trailing segment is fine
    let (f, _) = segment::create(tmp.path(), 11)?;
    drop(f);
    let wal = Wal::open(tmp.path(), o)?;
    assert_eq!(wal.last_index(), Some(10));
    wal.append_sync(batch(11, 12))?;
    check(&wal, 1, 12)?;
    Ok(())
}

#[test]
fn restart_loop_keeps_log_contiguous() -> TestResult {
    restart_loop(opts(300))
}

#[test]
fn preallocated_restart_loop_keeps_log_contiguous() -> TestResult {
    restart_loop(preallocated(300, 128))
}

/// Options with zero-filled preallocation of `ahead` bytes.
fn preallocated(segment_bytes: u64, ahead: u64) -> WalOptions {
    WalOptions {
        preallocate_bytes: ahead,
        ..opts(segment_bytes)
    }
}

/// End of the last frame of a segment file whose frames all end in a
/// non-zero byte (true of every payload these tests write): the position
/// after its last non-zero byte.
fn frames_end(seg: &Path) -> std::result::Result<u64, Box<dyn std::error::Error>> {
    let bytes = fs::read(seg)?;
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    Ok(end.max(HEADER_LEN) as u64)
}

/// Opens, checks against a model, appends, crashes (or closes), tears
/// unacknowledged bytes off the tail, and again, for 25 rounds. Tearing
/// shortens the file without preallocation and zeroes the end of the
/// frames with it (what a crash leaves of writes into zero-filled space).
fn restart_loop(o: WalOptions) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // model[i] = payload at index i + 1
    let mut model: Vec<Vec<u8>> = Vec::new();
    let acked = Arc::new(AtomicU64::new(0));
    for round in 0..25u64 {
        let wal = Wal::open(tmp.path(), o.clone())?;
        let last = wal.last_index().unwrap_or(0);
        let a = acked.load(Ordering::SeqCst);
        assert!(
            last >= a,
            "round {round}: lost acknowledged records: last {last} < acked {a}"
        );
        assert!(
            last as usize <= model.len(),
            "round {round}: records appeared from nowhere"
        );
        model.truncate(last as usize);
        let got = wal.entries(..)?;
        assert_eq!(got.len(), model.len(), "round {round}");
        for (i, d) in &got {
            assert_eq!(d, &model[(*i - 1) as usize], "round {round}, index {i}");
        }
        if round % 5 == 4 && last > 3 {
            let from = last - rng.below(3);
            wal.truncate(from)?;
            model.truncate((from - 1) as usize);
            // What was acknowledged above the cut is gone by design: only
            // what this round acknowledges again must survive.
            acked.fetch_min(from - 1, Ordering::SeqCst);
        }
        let mut last_batch_bytes = 0u64;
        let last_fired = Arc::new(AtomicBool::new(false));
        let batches = rng.below(5) + 1;
        for b in 0..batches {
            let lo = model.len() as u64 + 1;
            let n = rng.below(4) + 1;
            let recs: Vec<(u64, Vec<u8>)> = (lo..lo + n)
                .map(|i| {
                    (
                        i,
                        format!("r{round}b{b}i{i}-{}", "x".repeat(rng.below(20) as usize))
                            .into_bytes(),
                    )
                })
                .collect();
            last_batch_bytes = recs
                .iter()
                .map(|(_, d)| record::frame_len(d.len()) as u64)
                .sum();
            let hi = lo + n - 1;
            let (acked, fired) = (acked.clone(), last_fired.clone());
            let is_last = b + 1 == batches;
            wal.append(recs.iter().cloned(), move |r| {
                if r.is_ok() {
                    acked.fetch_max(hi, Ordering::SeqCst);
                    if is_last {
                        fired.store(true, Ordering::SeqCst);
                    }
                }
            })?;
            model.extend(recs.into_iter().map(|(_, d)| d));
        }
        if round % 3 == 0 {
            wal.sync()?;
        }
        if round % 2 == 0 {
            wal.crash();
        } else {
            drop(wal);
        }
        // A power loss may tear unacknowledged bytes off the tail.
        if !last_fired.load(Ordering::SeqCst)
            && let Some(seg) = seg_files(tmp.path()).pop()
        {
            let len = frames_end(&seg)?;
            let max_chop = last_batch_bytes.min(len - HEADER_LEN as u64);
            let chop = rng.below(max_chop + 1);
            let file = OpenOptions::new().write(true).open(&seg)?;
            if o.preallocate_bytes == 0 {
                file.set_len(len - chop)?;
            } else {
                file.write_all_at(&vec![0; chop as usize], len - chop)?;
            }
        }
    }
    let wal = Wal::open(tmp.path(), o)?;
    assert!(wal.last_index().unwrap_or(0) >= acked.load(Ordering::SeqCst));
    Ok(())
}

#[test]
fn meta_save_read_overwrite_and_leftover_tmp() -> TestResult {
    let tmp = tempfile::tempdir()?;
    {
        let wal = Wal::open(tmp.path(), opts(4096))?;
        assert_eq!(wal.read_meta("vote")?, None);
        wal.save_meta("vote", b"term=1")?;
        assert_eq!(wal.read_meta("vote")?, Some(b"term=1".to_vec()));
        wal.save_meta("vote", b"term=2,voted_for=3")?;
        wal.save_meta("committed", b"")?;
        assert_eq!(wal.read_meta("vote")?, Some(b"term=2,voted_for=3".to_vec()));
        assert_eq!(wal.read_meta("committed")?, Some(vec![]));
        assert!(matches!(
            wal.save_meta("../x", b""),
            Err(WalError::InvalidMetaName(_))
        ));
        assert!(matches!(
            wal.read_meta(""),
            Err(WalError::InvalidMetaName(_))
        ));
        assert!(matches!(
            wal.save_meta("big", &[0u8; 4097]),
            Err(WalError::MetaTooLarge { .. })
        ));
    }
    // a crash in the middle of a metadata write leaves a temp file
    let leftover = tmp.path().join("meta-vote.tmp");
    fs::write(&leftover, b"half-written garbage")?;
    let wal = Wal::open(tmp.path(), opts(4096))?;
    assert!(!leftover.exists(), "leftover temp file removed at open");
    assert_eq!(wal.read_meta("vote")?, Some(b"term=2,voted_for=3".to_vec()));
    // a corrupt metadata file is reported, not returned
    drop(wal);
    flip_byte(&tmp.path().join("meta-vote"), 22)?;
    let wal = Wal::open(tmp.path(), opts(4096))?;
    assert!(matches!(
        wal.read_meta("vote"),
        Err(WalError::Corrupt { .. })
    ));
    Ok(())
}

#[test]
fn failed_fsync_poisons_and_fails_waiting_callbacks() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(4096))?;
    wal.append_sync(batch(1, 2))?;
    wal.shared.fail_next_sync.store(true, Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    wal.append(batch(3, 3), move |r| {
        let _ = tx.send((3, r.map_err(|e| e.to_string())));
    })?;
    let first = rx.recv()?;
    assert_eq!(first.0, 3);
    let msg = first.1.err().unwrap_or_default();
    assert!(
        msg.contains("poisoned") && msg.contains("injected"),
        "{msg}"
    );
    // every later call fails clearly
    let e = wal.append(batch(4, 4), move |r| {
        let _ = tx2.send((4, r.map_err(|e| e.to_string())));
    });
    assert!(matches!(e, Err(WalError::Poisoned(_))), "{e:?}");
    assert!(matches!(wal.sync(), Err(WalError::Poisoned(_))));
    assert!(matches!(wal.entries(..), Err(WalError::Poisoned(_))));
    assert!(matches!(wal.truncate(1), Err(WalError::Poisoned(_))));
    assert!(matches!(wal.purge(1), Err(WalError::Poisoned(_))));
    assert!(matches!(
        wal.save_meta("vote", b"x"),
        Err(WalError::Poisoned(_))
    ));
    drop(wal);
    // reopening recovers from disk
    let wal = Wal::open(tmp.path(), opts(4096))?;
    check(&wal, 1, 3)?;
    Ok(())
}

#[test]
fn save_meta_waits_for_earlier_appends() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let wal = Wal::open(tmp.path(), opts(4096))?;
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    wal.append(batch(1, 5), move |r| {
        if r.is_ok() {
            d.store(true, Ordering::SeqCst);
        }
    })?;
    wal.save_meta("vote", b"v")?;
    // the append was made durable first (its callback may still be running)
    let synced = wal.shared.lock().synced;
    assert!(synced >= 1);
    drop(wal);
    assert!(done.load(Ordering::SeqCst));
    Ok(())
}

/// Micro benchmark: `cargo test --lib bench_group_commit -- --ignored --nocapture`.
/// Set BERTH_WAL_BENCH_DIR to measure on a particular disk.
#[test]
#[ignore]
fn bench_group_commit() -> TestResult {
    let base = std::env::var_os("BERTH_WAL_BENCH_DIR").map(PathBuf::from);
    for &(threads, per_thread) in &[(1u64, 500u64), (64, 100)] {
        let tmp = match &base {
            Some(b) => tempfile::tempdir_in(b)?,
            None => tempfile::tempdir()?,
        };
        let wal = Arc::new(Wal::open(tmp.path(), WalOptions::default())?);
        let next = Arc::new(Mutex::new(1u64));
        let data = Arc::new(vec![0x42u8; 256]);
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (wal, next, data) = (wal.clone(), next.clone(), data.clone());
                thread::spawn(move || -> std::result::Result<(), String> {
                    for _ in 0..per_thread {
                        let (tx, rx) = mpsc::channel();
                        {
                            let mut g = next.lock().map_err(|e| e.to_string())?;
                            wal.append([(*g, data.as_slice())], move |r| {
                                let _ = tx.send(r.map_err(|e| e.to_string()));
                            })
                            .map_err(|e| e.to_string())?;
                            *g += 1;
                        }
                        rx.recv().map_err(|e| e.to_string())??;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "thread panicked")??;
        }
        let el = start.elapsed();
        let st = wal.stats();
        println!(
            "bench: {threads:>2} appender(s): {} durable appends (256 B) in {:.2?} = {:.0} appends/s, {} fdatasyncs ({:.1} appends/sync, {:.2} ms/sync)",
            st.appends,
            el,
            st.appends as f64 / el.as_secs_f64(),
            st.syncs,
            st.appends as f64 / st.syncs.max(1) as f64,
            el.as_secs_f64() * 1000.0 / st.syncs.max(1) as f64,
        );
    }
    Ok(())
}

#[test]
fn recovery_never_panics_on_garbage() -> TestResult {
    let mut rng = Rng(0xdead_beef_1234_5678);
    for round in 0..300u64 {
        let tmp = tempfile::tempdir()?;
        let nseg = rng.below(3) + 1;
        let mut first = rng.below(3);
        for _ in 0..nseg {
            let mut bytes = Vec::new();
            if rng.below(4) > 0 {
                bytes.extend_from_slice(&segment::encode_header(first));
            }
            // a mix of valid records and random bytes
            let mut idx = first;
            for _ in 0..rng.below(6) {
                if rng.below(3) == 0 {
                    let n = rng.below(40) as usize;
                    bytes.extend((0..n).map(|_| rng.next() as u8));
                } else {
                    record::encode_into(&mut bytes, idx, &payload(idx));
                    idx += 1;
                }
            }
            if rng.below(5) == 0 && !bytes.is_empty() {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            fs::write(tmp.path().join(segment::file_name(first)), &bytes)?;
            first = idx + rng.below(2);
        }
        if rng.below(4) == 0 {
            fs::write(
                tmp.path().join(meta::PURGE_POINT_FILE),
                rng.next().to_le_bytes(),
            )?;
        }
        match Wal::open(tmp.path(), opts(4096)) {
            Ok(wal) => {
                // whatever survived must be readable and contiguous
                let got = wal.entries(..)?;
                for w in got.windows(2) {
                    assert_eq!(w[1].0, w[0].0 + 1, "round {round}");
                }
                let b = wal.bounds();
                assert_eq!(got.first().map(|e| e.0), b.first, "round {round}");
                assert_eq!(got.last().map(|e| e.0), b.last, "round {round}");
            }
            Err(e) => {
                assert!(
                    matches!(e, WalError::Corrupt { .. }),
                    "round {round}: unexpected error kind: {e}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn append_below_the_purge_point_of_an_empty_log_lowers_it_without_reviving_records() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let o = opts(150);
    let wal = Wal::open(tmp.path(), o.clone())?;
    wal.append_sync(batch(1, 20))?;
    wal.purge(100)?;
    wal.append_sync(batch(5, 7))?;
    assert_eq!(wal.purged_index(), Some(4));
    assert_eq!(wal.entries(..)?, batch(5, 7));
    drop(wal);
    let wal = Wal::open(tmp.path(), o.clone())?;
    assert_eq!(wal.purged_index(), Some(4));
    assert_eq!(
        wal.entries(..)?,
        batch(5, 7),
        "records purged earlier must not come back"
    );
    // Down to index 0: the log has no purge point at all.
    wal.purge(50)?;
    wal.append_sync(batch(0, 2))?;
    assert_eq!(wal.purged_index(), None);
    drop(wal);
    let wal = Wal::open(tmp.path(), o)?;
    assert_eq!(wal.entries(..)?, batch(0, 2));
    assert_eq!(wal.purged_index(), None);
    Ok(())
}
