//! The trainer through its C ABI (`rstar_trainer_*`: config JSON, progress callback, cancel, save,
//! errors) and resumable state (an interrupted run continues to the same weights as an unbroken one).

mod common;

use std::ffi::{c_void, CStr, CString};
use std::path::Path;

use rstar::ffi::rstar_last_error_message;
use rstar::ffi::train::*;
use rstar::train::{Task, TrainConfig, Trainer};
use rstar::Status;

fn data_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("data.jsonl");
    let mut text = String::new();
    for i in 0..6u32 {
        text += &format!(
            "{{\"prompt_ids\": [{}, {}, 7], \"response_ids\": [{}, {}, 2]}}\n",
            10 + i,
            20 + i,
            30 + 2 * i,
            40 + i
        );
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn model() -> std::path::PathBuf {
    common::fixtures().join("models/qwen2-f32-v5")
}

unsafe extern "C" fn stop_after_two(p: *const rstar_train_progress, ud: *mut c_void) -> bool {
    let seen = &mut *(ud as *mut Vec<f64>);
    let p = &*p;
    assert_eq!(
        p.struct_size as usize,
        std::mem::size_of::<rstar_train_progress>()
    );
    seen.push(p.loss);
    seen.len() < 2
}

#[test]
fn c_trainer_steps_cancels_and_saves() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_file(tmp.path());
    let mdir = CString::new(model().to_str().unwrap()).unwrap();
    let cfg = format!(
        "{{\"optimizer\": \"adamw\", \"lr\": 1e-3, \"batch_size\": 2, \"data\": {:?}, \"state_dir\": {:?}}}",
        data.to_str().unwrap(),
        tmp.path().join("state").to_str().unwrap()
    );
    let cfg = CString::new(cfg).unwrap();
    let mut t: *mut rstar_trainer = std::ptr::null_mut();
    unsafe {
        assert_eq!(
            rstar_trainer_new(mdir.as_ptr(), cfg.as_ptr(), &mut t),
            Status::Ok
        );
        let mut seen: Vec<f64> = Vec::new();
        let ud = &mut seen as *mut Vec<f64> as *mut c_void;
        // The callback stops the run after its second step.
        let st = rstar_trainer_step(t, 5, Some(stop_after_two), ud);
        assert_eq!(st, Status::Cancelled);
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|l| l.is_finite() && *l > 0.0));
        assert!(tmp.path().join("state/trainer_state.json").is_file());
        // cancel before the call: stops before any step, then the flag is cleared.
        rstar_trainer_cancel(t);
        assert_eq!(
            rstar_trainer_step(t, 1, None, std::ptr::null_mut()),
            Status::Cancelled
        );
        assert_eq!(
            rstar_trainer_step(t, 1, None, std::ptr::null_mut()),
            Status::Ok
        );
        // 6 examples / batch 2 = 3 steps per epoch, 2 epochs; 3 steps are done (epoch 1 is over), so
        // the epoch call runs all of epoch 2 and the run is finished.
        let mut fin = true;
        assert_eq!(rstar_trainer_finished(t, &mut fin), Status::Ok);
        assert!(!fin);
        assert_eq!(
            rstar_trainer_epoch(t, None, std::ptr::null_mut()),
            Status::Ok
        );
        assert_eq!(rstar_trainer_finished(t, &mut fin), Status::Ok);
        assert!(fin);
        let out = CString::new(tmp.path().join("out").to_str().unwrap()).unwrap();
        assert_eq!(rstar_trainer_save(t, out.as_ptr()), Status::Ok);
        rstar_trainer_free(t);
    }
    rstar::model::Model::load(&tmp.path().join("out")).unwrap();

    // Bad configs are typed errors with a message.
    for (cfg, needle) in [
        ("{\"lr\": \"fast\"}", "lr"),
        ("{\"learning_rate\": 1}", "learning_rate"),
        (
            "{\"task\": \"ppm\", \"data\": \"/nonexistent.jsonl\"}",
            "nonexistent",
        ),
    ] {
        let c = CString::new(cfg).unwrap();
        let mut t: *mut rstar_trainer = std::ptr::null_mut();
        let st = unsafe { rstar_trainer_new(mdir.as_ptr(), c.as_ptr(), &mut t) };
        assert_ne!(st, Status::Ok);
        assert!(t.is_null());
        let msg = unsafe { CStr::from_ptr(rstar_last_error_message()) }.to_string_lossy();
        assert!(msg.contains(needle), "{cfg}: {msg}");
    }
}

#[test]
fn resumed_run_matches_unbroken_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = data_file(tmp.path());
    let cfg = TrainConfig {
        task: Task::Sft,
        lr: 1e-3,
        batch_size: 2,
        max_steps: Some(4),
        save_every: None,
        checkpointing: true,
        ..TrainConfig::default()
    };
    let mut whole = Trainer::new(&model(), cfg.clone()).unwrap();
    whole.load_data(&data).unwrap();
    whole.run(None, &mut |_| true).unwrap();

    let state = tmp.path().join("state");
    let mut first = Trainer::new(&model(), cfg.clone()).unwrap();
    first.load_data(&data).unwrap();
    first.set_state_dir(Some(state.clone()));
    first.run(Some(2), &mut |_| true).unwrap();
    drop(first);
    let mut second = Trainer::new(&model(), cfg).unwrap();
    second.load_data(&data).unwrap();
    assert!(second.resume(&state).unwrap());
    assert_eq!(second.steps_done(), 2);
    second.run(None, &mut |_| true).unwrap();
    assert_eq!(second.steps_done(), 4);
    for (a, b) in whole.model.params.iter().zip(&second.model.params) {
        assert_eq!(a.value, b.value, "{}", a.name);
    }
}
