//go:build !race

package ftw

const raceDetector = false
