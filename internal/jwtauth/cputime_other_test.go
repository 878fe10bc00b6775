//go:build !unix

package jwtauth

import "time"

// processCPU is not measured here.
func processCPU() time.Duration { return 0 }
