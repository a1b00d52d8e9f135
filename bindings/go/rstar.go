// Package rstar is the Go binding of librstar (rStar-Math: search-based math reasoning with small
// language models) over its C ABI, with cgo. It links librstar through pkg-config (`rstar.pc`,
// installed by scripts/install.sh PREFIX; set PKG_CONFIG_PATH=PREFIX/lib/pkgconfig).
//
//	s, err := rstar.NewSolver(rstar.SolverOptions{}) // the default model
//	sol, err := s.Solve("What is 15% of 80?")
//	if sol.Found { fmt.Println(sol.Answer) }
//	defer s.Close()
//
// A Model may be used from several goroutines at once; calls on one Solver are serialised inside
// the library, and Cancel may be called from any goroutine. Callbacks run on a library thread
// while the calling goroutine is blocked in the call.
package rstar

// #cgo pkg-config: rstar
// #include <stdlib.h>
// #include "rstar.h"
// bool rstar_go_text(const char *text, size_t len, void *user);
// bool rstar_go_progress(const rstar_solver_progress *p, void *user);
// void rstar_go_code_runner(const char *code, size_t len, double timeout_s,
//                           rstar_code_result *result, void *user);
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"unsafe"
)

// Status codes of the C ABI (rstar_status).
const (
	StatusOK              = 0
	StatusInvalidArgument = 1
	StatusIO              = 2
	StatusFormat          = 3
	StatusUnsupported     = 4
	StatusTokenizer       = 5
	StatusExec            = 6
	StatusCancelled       = 7
	StatusOutOfMemory     = 8
	StatusDevice          = 9
	StatusInternal        = 100
)

// Error is a failed librstar call: the status code and the library's message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("rstar: %s (status %d)", e.Message, e.Status) }

// IsCancelled reports whether err is a librstar cancellation.
func IsCancelled(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == StatusCancelled
}

func check(st C.enum_rstar_status) error {
	if st == C.RSTAR_STATUS_OK {
		return nil
	}
	return &Error{Status: int(st), Message: C.GoString(C.rstar_last_error_message())}
}

// call runs f on a locked OS thread so that rstar_last_error_message is read on the thread
// that failed.
func call(f func() C.enum_rstar_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return check(f())
}

// cstr is a C copy of s (nil for "" when optional), to free with C.free.
func cstr(s string, optional bool) *C.char {
	if optional && s == "" {
		return nil
	}
	return C.CString(s)
}

func free(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// handlePtr is a C block holding h, passed as a callback's user_data (C.free it after use).
func handlePtr(h cgo.Handle) unsafe.Pointer {
	p := C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	*(*C.uintptr_t)(p) = C.uintptr_t(h)
	return p
}

// take returns the library string p as a Go string and frees it.
func take(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.rstar_string_free(p)
	return s
}

// Version is the library's version.
func Version() string { return C.GoString(C.rstar_version()) }

// Grade reports whether a predicted answer equals the reference answer, as the search grades.
func Grade(pred, answer string) bool {
	p, a := C.CString(pred), C.CString(answer)
	defer free(p)
	defer free(a)
	var eq C.bool
	if call(func() C.enum_rstar_status { return C.rstar_grade(p, a, &eq) }) != nil {
		return false
	}
	return bool(eq)
}

// ExtractAnswer returns the final answer of a solution text (the last \boxed{...}).
func ExtractAnswer(text string) (string, bool) {
	t := C.CString(text)
	defer free(t)
	var out *C.char
	if call(func() C.enum_rstar_status { return C.rstar_extract_answer(t, &out) }) != nil || out == nil {
		return "", false
	}
	return take(out), true
}

// ExecResult is the outcome of Exec.
type ExecResult struct {
	OK        bool            `json:"ok"`
	Output    string          `json:"output"`
	Error     *string         `json:"error"`
	TimedOut  bool            `json:"timed_out"`
	ElapsedMs float64         `json:"elapsed_ms"`
	Sandbox   json.RawMessage `json:"sandbox"`
}

// Exec runs one Python program in librstar's sandbox (a fresh worker).
func Exec(code string, timeoutS float64, weakSandbox bool) (*ExecResult, error) {
	c := C.CString(code)
	defer free(c)
	var p C.rstar_exec_params
	p.struct_size = C.uint32_t(unsafe.Sizeof(p)) // see rstar.h: a newer library fills only this much
	C.rstar_exec_default_params(&p)
	p.timeout_s = C.double(timeoutS)
	if weakSandbox {
		p.weak_sandbox = 1
	}
	var out *C.char
	if err := call(func() C.enum_rstar_status { return C.rstar_exec(c, &p, &out) }); err != nil {
		return nil, err
	}
	var r ExecResult
	if err := json.Unmarshal([]byte(take(out)), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Model is a loaded model (HF directory or .gguf).
type Model struct{ p *C.rstar_model }

// LoadModel loads a model; Close frees it.
func LoadModel(path string) (*Model, error) {
	c := C.CString(path)
	defer free(c)
	m := &Model{}
	if err := call(func() C.enum_rstar_status { return C.rstar_model_load(c, &m.p) }); err != nil {
		return nil, err
	}
	return m, nil
}

// Close frees the model; later calls return an error. Idempotent.
func (m *Model) Close() error {
	if m.p == nil {
		return nil
	}
	err := call(func() C.enum_rstar_status { return C.rstar_model_free(m.p) })
	m.p = nil
	return err
}

// GenerateOptions are the generation settings; the zero value is greedy with 256 new tokens.
type GenerateOptions struct {
	MaxNewTokens int // 0 = 256
	Temperature  float32
	TopK         int
	TopP         float32 // 0 = 1 (off)
	Seed         uint64
	Stop         []string
	Chat         bool              // render the prompt through the model's chat template
	OnText       func(string) bool // streamed text; false cancels
}

// Generate returns the continuation of prompt.
func (m *Model) Generate(prompt string, opts GenerateOptions) (string, error) {
	if m.p == nil {
		return "", &Error{StatusInvalidArgument, "the model is closed"}
	}
	var p C.rstar_generate_params
	p.struct_size = C.uint32_t(unsafe.Sizeof(p)) // see rstar.h: a newer library fills only this much
	C.rstar_generate_default_params(&p)
	if opts.MaxNewTokens > 0 {
		p.max_new_tokens = C.uint32_t(opts.MaxNewTokens)
	}
	p.temperature = C.float(opts.Temperature)
	p.top_k = C.uint32_t(opts.TopK)
	if opts.TopP > 0 {
		p.top_p = C.float(opts.TopP)
	}
	p.seed = C.uint64_t(opts.Seed)
	if len(opts.Stop) > 0 {
		arr := (*[1 << 20]*C.char)(C.malloc(C.size_t(len(opts.Stop)) * C.size_t(unsafe.Sizeof(uintptr(0)))))
		for i, s := range opts.Stop {
			arr[i] = C.CString(s)
		}
		defer func() {
			for i := range opts.Stop {
				free(arr[i])
			}
			C.free(unsafe.Pointer(arr))
		}()
		p.stop = &arr[0]
		p.n_stop = C.size_t(len(opts.Stop))
	}
	pr := C.CString(prompt)
	defer free(pr)
	var cb C.rstar_text_callback
	var user unsafe.Pointer
	if opts.OnText != nil {
		h := cgo.NewHandle(opts.OnText)
		defer h.Delete()
		cb = C.rstar_text_callback(C.rstar_go_text)
		user = handlePtr(h)
		defer C.free(user)
	}
	var out *C.char
	err := call(func() C.enum_rstar_status {
		return C.rstar_model_generate_text(m.p, pr, C.bool(opts.Chat), &p, cb, user, &out)
	})
	if err != nil {
		return "", err
	}
	var r struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal([]byte(take(out)), &r); err != nil {
		return "", err
	}
	return r.Text, nil
}

// CodeResult is what a CodeRunner reports for one program.
type CodeResult struct {
	OK     bool
	Output string
	Error  string
}

// CodeRunner runs one step's Python program instead of the sandbox (timeout in seconds).
type CodeRunner func(code string, timeoutS float64) CodeResult

// SolverOptions configure NewSolver; the zero value is the default model in inference mode.
type SolverOptions struct {
	Policy          string // "" = the default model, with its PPM and search settings
	PPM             string
	Config          string // JSON object or TOML text (keys of `rstar --config`)
	Device          string // "cpu", "cuda", "cuda:N"
	FastPrecision   bool
	Threads         int
	ExecutorWorkers int
	StepTimeoutS    float64
	StepMemoryBytes uint64
	Annotation      bool // MCTS annotation for data synthesis (needs Policy)
	WeakSandbox     bool
	CodeRunner      CodeRunner
}

// Solver is a policy (+ PPM) with a search configuration.
type Solver struct {
	p         *C.rstar_solver
	runner    cgo.Handle
	runnerPtr unsafe.Pointer // C block holding runner, the code runner's user_data
}

// Trajectory is one searched solution.
type Trajectory struct {
	Run      int     `json:"run"`
	Tag      string  `json:"tag"`
	Answer   string  `json:"answer"`
	Value    float64 `json:"value"`
	Solution string  `json:"solution"`
	Correct  *bool   `json:"correct"`
}

// Solution is the answer to one question.
type Solution struct {
	Question     string          `json:"question"`
	Answer       string          `json:"-"`
	Found        bool            `json:"-"`
	Pass1        *string         `json:"pass1"`
	Majority     *string         `json:"majority"`
	Weighted     *string         `json:"weighted"`
	Trajectories []Trajectory    `json:"trajectories"`
	Raw          json.RawMessage `json:"-"` // the library's full result
}

// NewSolver loads the models and starts the executor (or uses opts.CodeRunner); Close frees it.
func NewSolver(opts SolverOptions) (*Solver, error) {
	var p C.rstar_solver_params
	p.struct_size = C.uint32_t(unsafe.Sizeof(p)) // see rstar.h: a newer library fills only this much
	C.rstar_solver_default_params(&p)
	strs := []*C.char{cstr(opts.Policy, true), cstr(opts.PPM, true), cstr(opts.Config, true), cstr(opts.Device, true)}
	defer func() {
		for _, s := range strs {
			free(s)
		}
	}()
	p.policy, p.ppm, p.config, p.device = strs[0], strs[1], strs[2], strs[3]
	if opts.FastPrecision {
		p.precision = 1
	}
	p.threads = C.uint32_t(opts.Threads)
	p.executor_workers = C.uint32_t(opts.ExecutorWorkers)
	p.step_timeout_s = C.double(opts.StepTimeoutS)
	p.step_memory_bytes = C.uint64_t(opts.StepMemoryBytes)
	if opts.Annotation {
		p.mode = C.RSTAR_SOLVER_MODE_ANNOTATION
	}
	if opts.WeakSandbox {
		p.weak_sandbox = 1
	}
	s := &Solver{}
	if opts.CodeRunner != nil {
		s.runner = cgo.NewHandle(opts.CodeRunner)
		p.code_runner = C.rstar_code_runner(C.rstar_go_code_runner)
		s.runnerPtr = handlePtr(s.runner)
		p.code_runner_user_data = s.runnerPtr
	}
	if err := call(func() C.enum_rstar_status { return C.rstar_solver_new_with_params(&p, &s.p) }); err != nil {
		s.freeRunner()
		return nil, err
	}
	return s, nil
}

// Close frees the solver. Idempotent.
func (s *Solver) Close() error {
	if s.p == nil {
		return nil
	}
	err := call(func() C.enum_rstar_status { return C.rstar_solver_free(s.p) })
	s.p = nil
	s.freeRunner()
	return err
}

func (s *Solver) freeRunner() {
	if s.runner != 0 {
		s.runner.Delete()
		C.free(s.runnerPtr)
		s.runner, s.runnerPtr = 0, nil
	}
}

// Cancel stops the running (or the next) Solve/RunDataset; safe from any goroutine.
func (s *Solver) Cancel() {
	if s.p != nil {
		C.rstar_solver_cancel(s.p)
	}
}

// Solve solves one question with the configured search.
func (s *Solver) Solve(question string) (*Solution, error) {
	if s.p == nil {
		return nil, &Error{StatusInvalidArgument, "the solver is closed"}
	}
	q := C.CString(question)
	defer free(q)
	var out *C.char
	if err := call(func() C.enum_rstar_status { return C.rstar_solver_solve(s.p, q, &out) }); err != nil {
		return nil, err
	}
	raw := take(out)
	var sol Solution
	var answer struct {
		Answer *string `json:"answer"`
	}
	if err := json.Unmarshal([]byte(raw), &sol); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(raw), &answer); err != nil {
		return nil, err
	}
	if answer.Answer != nil {
		sol.Answer, sol.Found = *answer.Answer, true
	}
	sol.Raw = json.RawMessage(raw)
	return &sol, nil
}

// Progress of RunDataset.
type Progress struct {
	Done, Total, Solved, Rollouts, Tokens uint64
	Elapsed                               float64 // seconds
}

// RunDataset evaluates (inference) or annotates (annotation mode; out required, resumable) a
// problem file; returns the summary JSON. Cancelling ctx, or progress returning false, stops it
// (the error is ctx.Err() or a cancellation *Error).
func (s *Solver) RunDataset(ctx context.Context, path, out string, limit int, progress func(Progress) bool) (json.RawMessage, error) {
	if s.p == nil {
		return nil, &Error{StatusInvalidArgument, "the solver is closed"}
	}
	cp, co := C.CString(path), cstr(out, true)
	defer free(cp)
	defer free(co)
	var cb C.rstar_solver_callback
	var user unsafe.Pointer
	if progress != nil {
		h := cgo.NewHandle(progress)
		defer h.Delete()
		cb = C.rstar_solver_callback(C.rstar_go_progress)
		user = handlePtr(h)
		defer C.free(user)
	}
	var summary *C.char
	err := s.cancellable(ctx, func() C.enum_rstar_status {
		return C.rstar_solver_run_dataset(s.p, cp, C.size_t(limit), co, cb, user, &summary)
	})
	if err != nil {
		return nil, err
	}
	return json.RawMessage(take(summary)), nil
}

// cancellable runs f (a call on s) while a goroutine cancels s when ctx is cancelled; a
// cancellation caused by ctx is reported as ctx.Err().
func (s *Solver) cancellable(ctx context.Context, f func() C.enum_rstar_status) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			s.Cancel()
		case <-done:
		}
	}()
	err := call(f)
	close(done)
	<-stopped // no Cancel from this call lands after it returns
	if err != nil && ctx.Err() != nil && IsCancelled(err) {
		return ctx.Err()
	}
	return err
}

// Problem is one problem of RunProblems: its position in its dataset (search seeds are keyed by
// it, so it gets the line RunDataset writes for it) and a problem-file record
// ({"question", "answer"}, GSM8K's or MATH's own fields), marshalled with encoding/json.
type Problem struct {
	Index  int
	Record any
}

// RunProblems searches problems together and returns their output lines (JSON, no newline), in
// order, for a caller that writes the output file itself: in annotation mode the tree records
// RunDataset appends, in inference mode its per-problem results. Cancelling ctx stops it (the
// error is ctx.Err()); a bad problem is a StatusFormat *Error naming it.
func (s *Solver) RunProblems(ctx context.Context, problems []Problem) ([]string, error) {
	if s.p == nil {
		return nil, &Error{StatusInvalidArgument, "the solver is closed"}
	}
	type item struct {
		Index   int `json:"index"`
		Problem any `json:"problem"`
	}
	items := make([]item, len(problems))
	for i, p := range problems {
		items[i] = item{p.Index, p.Record}
	}
	js, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	cj := C.CString(string(js))
	defer free(cj)
	var out *C.char
	err = s.cancellable(ctx, func() C.enum_rstar_status { return C.rstar_solver_run_problems(s.p, cj, &out) })
	if err != nil {
		return nil, err
	}
	text := strings.TrimSuffix(take(out), "\n")
	if text == "" {
		return []string{}, nil
	}
	return strings.Split(text, "\n"), nil
}
