//! The checkpoint file format, intervals and resumes.

use super::*;

#[test]
fn intervals_parse() {
    assert_eq!(Every::parse("500 steps"), Some(Every::Steps(500)));
    assert_eq!(Every::parse("1step"), Some(Every::Steps(1)));
    assert_eq!(Every::parse("5m"), Some(Every::Time(Duration::from_secs(300))));
    assert_eq!(Every::parse("0.5"), Some(Every::Time(Duration::from_millis(500))));
    assert_eq!(Every::parse("0 steps"), None);
    assert_eq!(Every::parse("soon"), None);
    // Too large for a duration, or zero once rounded: no interval, no panic.
    assert_eq!(Every::parse("1e20"), None);
    assert_eq!(Every::parse("1e-300"), None);
    assert_eq!(thousands(41000), "41 000");
    assert_eq!(thousands(100), "100");
}

/// A checkpoint reads back as written; any flipped or missing byte is
/// caught before its state is used.
#[test]
fn checkpoints_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let key = Hash([4; 32]);
    let state: Vec<u8> = (0..1000u32).flat_map(|i| i.to_le_bytes()).collect();
    cache.write_checkpoint(&key, (41, 100), (&[], None), &state).unwrap();
    let back = cache.read_checkpoint(&key).unwrap().unwrap();
    assert_eq!((back.header.step, back.header.total, back.state), (41, 100, state));
    let path = cache.checkpoint_path(&key);
    let good = std::fs::read(&path).unwrap();
    for cut in [3, 10, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert!(cache.read_checkpoint(&key).is_err(), "cut at {cut}");
    }
    for at in [2, 20, good.len() - 5] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        assert!(cache.read_checkpoint(&key).is_err(), "flip at {at}");
    }
    std::fs::write(&path, &good).unwrap();
    assert!(matches!(cache.read_checkpoint(&Hash([5; 32])), Ok(None)));
    // A file in another key's place is not that key's state.
    std::fs::create_dir_all(cache.checkpoint_path(&Hash([5; 32])).parent().unwrap()).unwrap();
    std::fs::write(cache.checkpoint_path(&Hash([5; 32])), &good).unwrap();
    assert!(matches!(cache.read_checkpoint(&Hash([5; 32])), Err(CheckpointError::OtherKey { .. })));
    let ck = Checkpointing::for_key(&cache, Hash([5; 32]), DEFAULT_EVERY, true);
    assert_eq!(ck.warnings().len(), 1, "{:?}", ck.warnings());
    assert!(ck.resume().is_none());
    assert!(!cache.checkpoint_path(&Hash([5; 32])).exists());
}

/// `N steps` saves once per `N` even where the stage's boundaries step
/// by more than one (chunks of 4096 particles: a multiple of 1000 is
/// never a boundary).
#[test]
fn a_step_interval_saves_past_each_multiple() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let key = Hash([7; 32]);
    let ck = Checkpointing::for_key(&cache, key, Every::Steps(1000), true);
    let saved: Vec<u64> = (0..10u64)
        .map(|i| i * 4096)
        .filter(|&step| {
            ck.at_boundary(step, 40_960, || vec![1]).unwrap();
            cache.read_checkpoint(&key).unwrap().is_some_and(|c| c.header.step == step)
        })
        .collect();
    assert_eq!(saved, [4096, 8192, 12288, 16384, 20480, 24576, 28672, 32768, 36864]);
}

/// A state that verifies but does not fit the stage (its decode says
/// no) is discarded with a warning, and no resume is counted.
#[test]
fn a_state_that_does_not_fit_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let key = Hash([8; 32]);
    cache.write_checkpoint(&key, (5, 10), (&[], None), b"state").unwrap();
    let ck = Checkpointing::for_key(&cache, key, DEFAULT_EVERY, true);
    assert!(ck.resume_with(|_| None::<()>).is_none());
    assert!(ck.resumes().is_empty() && ck.resumed_from().is_none());
    assert_eq!(ck.warnings().len(), 1, "{:?}", ck.warnings());
    assert!(ck.warnings()[0].contains("does not fit"), "{:?}", ck.warnings());
    assert!(!cache.checkpoint_path(&key).exists());
}

/// A header whose pace is absurd (a file of someone else's) still
/// describes itself: no overflow.
#[test]
fn an_absurd_pace_does_not_overflow() {
    let h = Header {
        key: String::new(),
        step: 1,
        total: 3,
        written_ms: 0,
        state_bytes: 0,
        state_hash: String::new(),
        resumes: Vec::new(),
        work: Some((0, u64::MAX)),
    };
    assert!(h.describe().starts_with("step 1 of 3"), "{}", h.describe());
}

/// Each resume is carried in the checkpoints after it, so the run that
/// finishes knows every stop on the way; a header from before the
/// history was kept reads as one without resumes.
#[test]
fn checkpoints_carry_the_resumes_that_led_to_them() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let key = Hash([6; 32]);
    let earlier = Resume { step: 10, at_ms: 1 };
    let pace = Some((0, 40 * 60_000));
    cache.write_checkpoint(&key, (40, 100), (std::slice::from_ref(&earlier), pace), b"state").unwrap();
    let ck = Checkpointing::for_key(&cache, key, Every::Steps(10), true);
    assert!(ck.resumes().is_empty(), "nothing resumed before the stage asks");
    assert_eq!(ck.resume().map(|c| c.state), Some(b"state".to_vec()));
    let resumes = ck.resumes();
    assert_eq!((resumes.len(), &resumes[0], resumes[1].step), (2, &earlier, 40));
    assert_eq!(ck.resumed_from(), Some(40));
    ck.at_boundary(40, 100, || unreachable!("the resumed step is not saved again")).unwrap();
    ck.at_boundary(50, 100, || b"later".to_vec()).unwrap();
    let back = cache.read_checkpoint(&key).unwrap().unwrap();
    assert_eq!((back.header.step, &back.header.resumes), (50, &resumes));
    // 40 minutes for the first 40 steps (and a moment for ten more): 50 steps left take 40.
    assert_eq!(back.header.work.map(|w| (w.0, w.1 / 1000)), Some((0, 2400)));
    let said = back.header.describe();
    assert!(said.ends_with("; resumed 2 times before; about 40m of work left at the pace so far)"), "{said}");
    // The header as written before resumes were kept.
    let old = format!(
        r#"{{"key":"{}","step":3,"total":9,"written_ms":5,"state_bytes":2,"state_hash":"{}"}}"#,
        key.hex(),
        blake3::hash(b"ab").to_hex()
    );
    let mut bytes = MAGIC_V1.to_vec();
    bytes.extend_from_slice(&(old.len() as u32).to_le_bytes());
    bytes.extend_from_slice(old.as_bytes());
    bytes.extend_from_slice(b"ab");
    let back = parse(&bytes).unwrap();
    assert_eq!((back.header.step, back.header.resumes.len(), back.state), (3, 0, b"ab".to_vec()));
    assert_eq!((back.header.work, back.header.left_ms()), (None, None));
    // Resumed, it times its pace from its own step on.
    std::fs::write(cache.checkpoint_path(&key), &bytes).unwrap();
    let ck = Checkpointing::for_key(&cache, key, Every::Steps(1), true);
    assert!(ck.resume().is_some());
    ck.at_boundary(4, 9, || b"cd".to_vec()).unwrap();
    let back = cache.read_checkpoint(&key).unwrap().unwrap();
    assert_eq!((back.header.resumes.len(), back.header.work.map(|w| w.0)), (1, Some(3)));
}
