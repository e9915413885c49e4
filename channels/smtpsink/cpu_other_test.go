//go:build !unix

package smtpsink_test

import "time"

// cpuTime is not measured here; benchmarks then skip their CPU metric.
func cpuTime() time.Duration { return 0 }
