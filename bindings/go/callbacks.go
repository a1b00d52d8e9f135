// Callbacks from librstar into Go (a panic in a user callback cancels the call instead of
// crossing the C boundary).
package rstar

// #include <stdbool.h>
// #include <stdint.h>
// #include <stdlib.h>
// #include "rstar.h"
import "C"

import (
	"runtime/cgo"
	"unsafe"
)

//export goTextCallback
func goTextCallback(text *C.char, n C.size_t, h C.uintptr_t) (ok C.bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f := cgo.Handle(h).Value().(func(string) bool)
	return C.bool(f(C.GoStringN(text, C.int(n))))
}

//export goSolverProgress
func goSolverProgress(p *C.rstar_solver_progress, h C.uintptr_t) (ok C.bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f := cgo.Handle(h).Value().(func(Progress) bool)
	return C.bool(f(Progress{
		Done:     uint64(p.done),
		Total:    uint64(p.total),
		Solved:   uint64(p.solved),
		Rollouts: uint64(p.rollouts),
		Tokens:   uint64(p.tokens),
		Elapsed:  float64(p.elapsed_secs),
	}))
}

//export goCodeRunner
func goCodeRunner(code *C.char, n C.size_t, timeout C.double, result *C.rstar_code_result, h C.uintptr_t) {
	// A panicking runner sets no result: the step fails (a Go panic must not cross into C).
	defer func() { _ = recover() }()
	f := cgo.Handle(h).Value().(CodeRunner)
	r := f(C.GoStringN(code, C.int(n)), float64(timeout))
	out := C.CString(r.Output)
	defer C.free(unsafe.Pointer(out))
	var errp *C.char
	if !r.OK || r.Error != "" {
		errp = C.CString(r.Error)
		defer C.free(unsafe.Pointer(errp))
	}
	C.rstar_code_result_set(result, C.bool(r.OK), out, errp)
}

//export goEvolveEvent
func goEvolveEvent(e *C.rstar_evolve_event, h C.uintptr_t) (ok C.bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	f := cgo.Handle(h).Value().(func(EvolveEvent) bool)
	return C.bool(f(evolveEvent(e)))
}
