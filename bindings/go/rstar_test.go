package rstar

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const question = "A jacket costs $160. It is on sale for 25% off. What is the sale price in dollars?"

// tinyModel is $RSTAR_TINY_MODEL, else the repository's models/tiny.
func tinyModel(t *testing.T) string {
	for _, d := range []string{os.Getenv("RSTAR_TINY_MODEL"), "../../models/tiny"} {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "policy", "config.json")); err == nil {
			return d
		}
	}
	t.Skip("SKIPPED: no tiny model (set RSTAR_TINY_MODEL)")
	return ""
}

func newSolver(t *testing.T, dir string, opts SolverOptions) *Solver {
	opts.Policy = filepath.Join(dir, "policy")
	opts.PPM = filepath.Join(dir, "ppm")
	if opts.Config == "" {
		cfg, err := os.ReadFile(filepath.Join(dir, "search.toml"))
		if err != nil {
			t.Fatal(err)
		}
		opts.Config = string(cfg)
	}
	opts.ExecutorWorkers = 2
	s, err := NewSolver(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSolvesTheReadmeQuestion(t *testing.T) {
	s := newSolver(t, tinyModel(t), SolverOptions{})
	defer s.Close()
	sol, err := s.Solve(question)
	if err != nil {
		t.Fatal(err)
	}
	if !sol.Found || !Grade(sol.Answer, "120") {
		t.Fatalf("answer %q (found %v), want 120", sol.Answer, sol.Found)
	}
	if len(sol.Trajectories) == 0 || !strings.Contains(string(sol.Raw), "\"stats\"") {
		t.Fatalf("incomplete solution: %s", sol.Raw)
	}
	if err := s.Close(); err != nil || s.Close() != nil {
		t.Fatal("Close is not idempotent")
	}
	if _, err := s.Solve(question); err == nil {
		t.Fatal("solve on a closed solver succeeded")
	}
}

func TestGradeExtractErrors(t *testing.T) {
	if !Grade(`\frac{1}{2}`, "0.5") || Grade("121", "120") {
		t.Fatal("grade")
	}
	if a, ok := ExtractAnswer(`so \boxed{42}.`); !ok || a != "42" {
		t.Fatalf("extract: %q %v", a, ok)
	}
	if _, ok := ExtractAnswer("nothing"); ok {
		t.Fatal("extracted from nothing")
	}
	_, err := LoadModel("/nonexistent/model")
	var e *Error
	if err == nil || !strings.Contains(err.Error(), "nonexistent") || !asError(err, &e) || e.Status == StatusOK {
		t.Fatalf("error: %v", err)
	}
	_, err = NewSolver(SolverOptions{Annotation: true})
	if !asError(err, &e) || e.Status != StatusInvalidArgument {
		t.Fatalf("annotation without a policy: %v", err)
	}
}

func asError(err error, e **Error) bool {
	v, ok := err.(*Error)
	*e = v
	return ok
}

func TestGenerateStreams(t *testing.T) {
	m, err := LoadModel(filepath.Join(tinyModel(t), "policy"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var streamed strings.Builder
	text, err := m.Generate("What is 2 + 2?", GenerateOptions{MaxNewTokens: 8, OnText: func(s string) bool {
		streamed.WriteString(s)
		return true
	}})
	if err != nil || text != streamed.String() {
		t.Fatalf("generate: %q vs streamed %q (%v)", text, streamed.String(), err)
	}
	_, err = m.Generate("What is 2 + 2?", GenerateOptions{MaxNewTokens: 8, OnText: func(string) bool { return false }})
	if !IsCancelled(err) {
		t.Fatalf("callback cancel: %v", err)
	}
}

func TestRunDatasetContextCancel(t *testing.T) {
	dir := tinyModel(t)
	s := newSolver(t, dir, SolverOptions{})
	defer s.Close()
	data := filepath.Join(t.TempDir(), "problems.jsonl")
	line := `{"question": "` + strings.ReplaceAll(question, `$`, `$`) + `", "answer": "120"}` + "\n"
	if err := os.WriteFile(data, []byte(line+`{"question": "What is 6 times 7?", "answer": "42"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var last Progress
	sum, err := s.RunDataset(context.Background(), data, "", 0, func(p Progress) bool { last = p; return true })
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Accuracy struct{ Problems int } `json:"accuracy"`
	}
	if json.Unmarshal(sum, &v) != nil || v.Accuracy.Problems != 2 || last.Done != 2 {
		t.Fatalf("summary %s, last progress %+v", sum, last)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err = s.RunDataset(ctx, data, "", 0, func(Progress) bool { cancel(); time.Sleep(20 * time.Millisecond); return true })
	if err != context.Canceled {
		t.Fatalf("context cancel: %v", err)
	}
}

func TestCodeRunnerAndAnnotation(t *testing.T) {
	dir := tinyModel(t)
	calls := 0
	s := newSolver(t, dir, SolverOptions{Config: `{"search": "greedy"}`, CodeRunner: func(code string, timeoutS float64) CodeResult {
		calls++
		out, err := exec.Command("python3", "-c", code).CombinedOutput()
		if err != nil {
			return CodeResult{OK: false, Output: string(out), Error: string(out)}
		}
		return CodeResult{OK: true, Output: string(out)}
	}})
	defer s.Close()
	sol, err := s.Solve(question)
	if err != nil || calls == 0 || !sol.Found || !Grade(sol.Answer, "120") {
		t.Fatalf("code runner: %v calls=%d answer=%q", err, calls, sol.Answer)
	}

	a := newSolver(t, dir, SolverOptions{Config: `{"rollouts": 2, "width": 2, "max_depth": 3}`, Annotation: true})
	defer a.Close()
	tmp := t.TempDir()
	data, trees := filepath.Join(tmp, "p.jsonl"), filepath.Join(tmp, "trees.jsonl")
	os.WriteFile(data, []byte(`{"question": "What is 2 + 2?", "answer": "4"}`+"\n"), 0o644)
	for i, want := range []string{`"problems":1`, `"skipped":1`} {
		sum, err := a.RunDataset(context.Background(), data, trees, 0, nil)
		if err != nil || !strings.Contains(string(sum), want) {
			t.Fatalf("annotation run %d: %s %v", i, sum, err)
		}
	}
}

// heldout is the first n problems of the tiny model's held-out file, as parsed records.
func heldout(t *testing.T, dir string, n int) []map[string]any {
	text, err := os.ReadFile(filepath.Join(dir, "heldout.jsonl"))
	if err != nil {
		t.Skipf("SKIPPED: %v", err)
	}
	var out []map[string]any
	for _, l := range strings.SplitN(strings.TrimSpace(string(text)), "\n", n+1)[:n] {
		var r map[string]any
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// RunProblems gives, for a problem at position i, the very tree record RunDataset appends for
// it, batched or alone; a bad problem is a FORMAT error; cancelling ctx stops it.
func TestRunProblemsLinesEqualTheDatasetRun(t *testing.T) {
	dir := tinyModel(t)
	probs := heldout(t, dir, 3)
	s := newSolver(t, dir, SolverOptions{Config: `{"rollouts": 2, "width": 2, "max_depth": 4, "max_step_tokens": 48}`, Annotation: true})
	defer s.Close()
	tmp := t.TempDir()
	data, trees := filepath.Join(tmp, "p.jsonl"), filepath.Join(tmp, "trees.jsonl")
	var file strings.Builder
	batch := make([]Problem, len(probs))
	for i, p := range probs {
		line, _ := json.Marshal(p)
		file.Write(append(line, '\n'))
		batch[i] = Problem{Index: i, Record: p}
	}
	if err := os.WriteFile(data, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RunDataset(context.Background(), data, trees, 0, nil); err != nil {
		t.Fatal(err)
	}
	written, _ := os.ReadFile(trees)
	ref := strings.Split(strings.TrimSuffix(string(written), "\n"), "\n")
	lines, err := s.RunProblems(context.Background(), batch)
	if err != nil || len(ref) != 3 || strings.Join(lines, "\n") != strings.Join(ref, "\n") {
		t.Fatalf("batched lines differ from the dataset run (%v):\n%q\n%q", err, lines, ref)
	}
	alone, err := s.RunProblems(context.Background(), batch[2:])
	if err != nil || len(alone) != 1 || alone[0] != ref[2] {
		t.Fatalf("problem 2 alone: %v %q", err, alone)
	}
	_, err = s.RunProblems(context.Background(), []Problem{{0, map[string]string{"question": "no answer"}}})
	var e *Error
	if !asError(err, &e) || e.Status != StatusFormat || !strings.Contains(e.Message, "problem 0") {
		t.Fatalf("bad problem: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err = s.RunProblems(ctx, batch); err != context.Canceled {
		t.Fatalf("context cancel: %v", err)
	}
	if lines, err = s.RunProblems(context.Background(), batch[:1]); err != nil || lines[0] != ref[0] {
		t.Fatalf("after a cancel: %v %q", err, lines)
	}
}

// Evolve: a callback returning false cancels, a rerun resumes (round 0's evaluation is skipped)
// and returns the rows of rounds.json; every stage is reported in order.
func TestEvolveCancelAndResume(t *testing.T) {
	dir := tinyModel(t)
	tmp := t.TempDir()
	data := filepath.Join(tmp, "problems.json")
	os.WriteFile(data, []byte(`[{"question": "What is 6 times 7?", "answer": "42"},
		{"question": "What is 2 plus 3?", "answer": "5"},
		{"question": "What is 10 minus 4?", "answer": "6"}]`), 0o644)
	opts := EvolveOptions{
		Policy: filepath.Join(dir, "policy"), Data: data, Workdir: filepath.Join(tmp, "work"), Rounds: 1, Threads: 2,
		Config: `{"mcts": {"rollouts": 2, "width": 2, "max_depth": 2, "max_step_tokens": 6},
			"round1_rollouts": 2, "batch": 2, "holdout": 0.34, "eval_ppm_rollouts": 1,
			"sft": {"max_steps": 1, "batch_size": 1, "seq_len": 1024},
			"ppm": {"max_steps": 1, "batch_size": 1, "seq_len": 1024}}`,
	}
	_, err := Evolve(context.Background(), opts, func(e EvolveEvent) bool { return !(e.Kind == "problems" && e.Round == 1) })
	var e *Error
	if asError(err, &e) && e.Status == StatusExec {
		t.Skipf("SKIPPED: the sandboxed executor cannot start here: %v", err)
	}
	if !IsCancelled(err) {
		t.Fatalf("callback cancel: %v", err)
	}
	var events []EvolveEvent
	rows, err := Evolve(context.Background(), opts, func(e EvolveEvent) bool { events = append(events, e); return true })
	if err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(filepath.Join(opts.Workdir, "rounds.json"))
	var fileRows []json.RawMessage
	if json.Unmarshal(file, &fileRows) != nil || len(rows) != 2 || len(fileRows) != 2 {
		t.Fatalf("rows %s, rounds.json %s", rows, file)
	}
	var stages []string
	for i, ev := range events {
		if ev.Kind == "stage" {
			stages = append(stages, ev.Stage)
		}
		if (ev.Kind == "train") != (ev.Train != nil) || (ev.Kind == "round") != (ev.Row != nil) {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if ev.Kind == "round" && !jsonEqual(ev.Row, fileRows[ev.Round]) {
			t.Fatalf("event %d row %s, rounds.json %s", i, ev.Row, fileRows[ev.Round])
		}
	}
	for i := range rows {
		var row struct{ Round int }
		if json.Unmarshal(rows[i], &row) != nil || row.Round != i || !jsonEqual(rows[i], fileRows[i]) {
			t.Fatalf("row %d: %s vs %s", i, rows[i], fileRows[i])
		}
	}
	if strings.Join(stages, ",") != "eval,mcts,extract,sft,ppm,eval" || !events[0].Skipped {
		t.Fatalf("stages %v, first skipped %v", stages, events[0].Skipped)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	opts.Workdir = filepath.Join(tmp, "work2")
	if _, err := Evolve(ctx, opts, nil); err != context.Canceled {
		t.Fatalf("context cancel: %v", err)
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
