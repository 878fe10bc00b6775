//go:build race

package attack

// raceDetector is set when the tests are built with -race. The attack
// tests drive external tools and thousands of requests, which the race
// detector slows many times over without finding anything the unit tests
// would not: .ci/run runs them in a step of their own, without it.
const raceDetector = true
