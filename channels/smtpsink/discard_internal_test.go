package smtpsink

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
)

// The end-of-data line is found wherever reads split the content: a tiny
// read buffer puts every split position under test.
func TestDiscardContentAcrossReads(t *testing.T) {
	t.Parallel()
	for size := 24; size <= 40; size += 5 {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			s := &Sink{cfg: Config{Domain: "sink.test"}, clients: map[net.Conn]bool{},
				failRcpt: map[string][]int{}, failData: map[string][]int{}}
			client, server := net.Pipe()
			done := make(chan struct{})
			go func() {
				defer close(done)
				(&discardConn{sink: s, nc: server, buf: make([]byte, size)}).serve()
				_ = server.Close()
			}()

			var script strings.Builder
			script.WriteString("EHLO x\r\n")
			const messages = 60
			for i := range messages {
				script.WriteString("MAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
				// Content of many lengths (none at all first), with
				// stuffed dots, a lone CR and look-alikes of the end line.
				if i > 0 {
					script.WriteString(strings.Repeat("x", i%17) + "\r\n")
					script.WriteString([]string{"", "..\r\n", ".x\r\n", "a\r.\r\n", "..\r\n..\r\n"}[i%5])
				}
				script.WriteString(".\r\n")
			}
			script.WriteString("QUIT\r\n")

			replies := make(chan []string, 1)
			go func() {
				var codes []string
				r := bufio.NewReader(client)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						replies <- codes
						return
					}
					if len(line) >= 4 && line[3] == ' ' {
						codes = append(codes, line[:3])
					}
				}
			}()
			if _, err := io.WriteString(client, script.String()); err != nil {
				t.Fatalf("writing the script: %v", err)
			}
			<-done
			_ = client.Close()
			got := <-replies
			want := []string{"220", "250"}
			for range messages {
				want = append(want, "250", "250", "354", "250")
			}
			want = append(want, "221")
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("replies\n%v\nwant\n%v", got, want)
			}
			if s.Count() != messages {
				t.Errorf("Count = %d, want %d", s.Count(), messages)
			}
		})
	}
}
