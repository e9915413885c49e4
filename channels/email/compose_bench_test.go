package email

import (
	"strings"
	"testing"

	"github.com/dialogwerk/dialogwerk/channels"
)

func benchMessage(htmlRepeat int) channels.Message {
	return channels.Message{
		Key:     "decision-42:email",
		Channel: channels.Email,
		To:      "erika.mustermann@example.org",
		ToName:  "Erika Müller",
		Subject: "Ihr Vertrag endet bald – Grüße aus Musterstadt",
		Text:    strings.Repeat("Hallo Frau Müller,\nIhr Vertrag endet am 31.12. Wir haben ein günstiges Angebot für Sie.\n", htmlRepeat/4+1),
		HTML:    "<html><body>" + strings.Repeat("<p>Hallo Frau Müller, Strom &amp; Gas &lt;günstig&gt; – jetzt wechseln und sparen.</p>\n", htmlRepeat) + "</body></html>",
	}
}

func BenchmarkCompose(b *testing.B) {
	for _, c := range []struct {
		name string
		n    int
	}{{"small", 1}, {"html30k", 300}} {
		b.Run(c.name, func(b *testing.B) {
			s, err := New(Config{From: "service@stadtwerke-musterstadt.de", FromName: "Stadtwerke Musterstadt", TLS: TLSNone})
			if err != nil {
				b.Fatal(err)
			}
			msg := benchMessage(c.n)
			id := messageID(msg.Key, s.cfg.MessageIDDomain)
			b.ReportAllocs()
			for b.Loop() {
				buf := getBuffer()
				if err := s.compose(buf, msg, msg.To, id); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(dataContent(buf))))
				putBuffer(buf)
			}
		})
	}
}
