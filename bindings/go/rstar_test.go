package rstar

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
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
