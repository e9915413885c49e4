package smtpsink_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
)

// BenchmarkDiscard measures the sink in Discard mode: one client connection
// hands off pipelined transactions of a 3 kB message. The client is a few
// writes and reads per message; the rest of cpu-µs/msg is the sink.
func BenchmarkDiscard(b *testing.B) {
	s, err := smtpsink.Start(context.Background(), smtpsink.Config{Mode: smtpsink.Discard})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	// replies reads n replies and fails on any but 2xx/3xx.
	replies := func(n int) {
		for n > 0 {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if line[0] != '2' && line[0] != '3' {
				b.Fatalf("reply %q", line)
			}
			if line[3] == ' ' {
				n--
			}
		}
	}
	replies(1)
	if _, err := c.Write([]byte("EHLO bench.example\r\n")); err != nil {
		b.Fatal(err)
	}
	replies(1)
	cmds := []byte("MAIL FROM:<service@stadtwerke.example> BODY=8BITMIME\r\nRCPT TO:<kunde@example.org>\r\nDATA\r\n")
	content := []byte(strings.ReplaceAll(rawMail, "Sch=C3=B6ne Gr=C3=BC=C3=9Fe,", strings.Repeat("Sch=C3=B6ne Gr=C3=BC=C3=9Fe, Ihr Vertrag endet bald =E2=80=93 jetzt verl=C3=A4ngern=\r\n", 30)) + ".\r\n")
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for range b.N {
		if _, err := c.Write(cmds); err != nil {
			b.Fatal(err)
		}
		replies(3)
		if _, err := c.Write(content); err != nil {
			b.Fatal(err)
		}
		replies(1)
	}
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if s.Count() != b.N {
		b.Errorf("Count = %d, want %d", s.Count(), b.N)
	}
}
