// Self-evolution (rstar_evolve_run): the rounds of `rstar evolve` with progress events and
// cancellation.
package rstar

// #include <stdlib.h>
// #include "rstar.h"
// bool rstar_go_evolve(const rstar_evolve_event *e, void *user);
import "C"

import (
	"context"
	"encoding/json"
	"runtime/cgo"
	"unsafe"
)

// EvolveOptions are the arguments of `rstar evolve`; Policy, Data and Workdir are required.
type EvolveOptions struct {
	Policy        string // base policy model directory
	Data          string // training problems (JSON list, {"example": [...]} or JSONL)
	EvalData      string // held-out problems; "" = the last `holdout` fraction of Data
	ReplayData    string // SFT examples mixed into every round, or ""
	Workdir       string // round-N/ stages and rounds.json; a rerun resumes
	Rounds        int    // 0 = 2
	Config        string // JSON object of `rstar evolve --config` keys, or "" for defaults
	FastPrecision bool   // bf16 activations in the search stages (training is f32)
	Threads       int    // 0 = one per core
}

// Evolve stages and event kinds, as EvolveEvent names them.
var (
	EvolveStages = []string{"mcts", "extract", "sft", "ppm", "eval"}
	EvolveKinds  = []string{"stage", "problems", "train", "round"}
)

// TrainProgress is the progress of a training stage.
type TrainProgress struct {
	Epoch                      uint32
	Step, TotalSteps           uint64
	Loss, GradNorm, LR         float64
	Tokens                     uint64
	TokensPerSec, Elapsed, ETA float64 // seconds for Elapsed and ETA
}

// EvolveEvent is one event of Evolve: Kind "stage" (Skipped when an earlier run finished it),
// "problems" (Done of Total), "train" (Train) or "round" (Row: the finished round's row).
type EvolveEvent struct {
	Kind    string
	Round   int // 0: the base policy's evaluation
	Stage   string
	Skipped bool
	Done    uint64
	Total   uint64
	Train   *TrainProgress
	Row     json.RawMessage
}

func evolveEvent(e *C.rstar_evolve_event) EvolveEvent {
	ev := EvolveEvent{
		Kind:    EvolveKinds[e.kind],
		Round:   int(e.round),
		Stage:   EvolveStages[e.stage],
		Skipped: e.skipped != 0,
		Done:    uint64(e.done),
		Total:   uint64(e.total),
	}
	if e.kind == C.RSTAR_EVOLVE_EVENT_TRAIN {
		t := &e.train
		ev.Train = &TrainProgress{
			Epoch: uint32(t.epoch), Step: uint64(t.step), TotalSteps: uint64(t.total_steps),
			Loss: float64(t.loss), GradNorm: float64(t.grad_norm), LR: float64(t.lr),
			Tokens: uint64(t.tokens), TokensPerSec: float64(t.tokens_per_sec),
			Elapsed: float64(t.elapsed_secs), ETA: float64(t.eta_secs),
		}
	}
	if e.round_json != nil {
		ev.Row = json.RawMessage(C.GoString(e.round_json))
	}
	return ev
}

// Evolve runs (or resumes, in opts.Workdir) self-evolution rounds as `rstar evolve` does: MCTS
// synthesis, extraction, policy SFT, PPM training, evaluation. progress (may be nil) sees every
// event; returning false, or cancelling ctx, stops the run at its next event (the error is a
// cancellation *Error, or ctx.Err()); calling again with the same Workdir resumes. Returns the
// per-round table (the rows of Workdir/rounds.json).
func Evolve(ctx context.Context, opts EvolveOptions, progress func(EvolveEvent) bool) ([]json.RawMessage, error) {
	var p C.rstar_evolve_params
	p.struct_size = C.uint32_t(unsafe.Sizeof(p)) // see rstar.h: a newer library fills only this much
	C.rstar_evolve_default_params(&p)
	strs := []*C.char{
		cstr(opts.Policy, false), cstr(opts.Data, false), cstr(opts.EvalData, true),
		cstr(opts.ReplayData, true), cstr(opts.Workdir, false), cstr(opts.Config, true),
	}
	defer func() {
		for _, s := range strs {
			free(s)
		}
	}()
	p.policy, p.data, p.eval_data, p.replay_data, p.workdir, p.config = strs[0], strs[1], strs[2], strs[3], strs[4], strs[5]
	if opts.Rounds > 0 {
		p.rounds = C.uint32_t(opts.Rounds)
	}
	if opts.FastPrecision {
		p.precision = 1
	}
	p.threads = C.uint32_t(opts.Threads)
	// The library has no handle to cancel here: the callback stops the run once ctx is done.
	f := func(e EvolveEvent) bool {
		return ctx.Err() == nil && (progress == nil || progress(e))
	}
	h := cgo.NewHandle(f)
	defer h.Delete()
	user := handlePtr(h)
	defer C.free(user)
	var out *C.char
	err := call(func() C.enum_rstar_status {
		return C.rstar_evolve_run(&p, C.rstar_evolve_callback(C.rstar_go_evolve), user, &out)
	})
	if err != nil {
		if ctx.Err() != nil && IsCancelled(err) {
			return nil, ctx.Err()
		}
		return nil, err
	}
	var rows []json.RawMessage
	if err := json.Unmarshal([]byte(take(out)), &rows); err != nil {
		return nil, err
	}
	return rows, nil
}
