package email_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/email"
	"github.com/dialogwerk/dialogwerk/channels/smtpsink"
)

// A Sender pointed at a local SMTP server (here the test sink; in
// production a relay with TLS "starttls" and credentials).
func Example() {
	ctx := context.Background()
	sink, err := smtpsink.Start(ctx, smtpsink.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	sender, err := email.New(email.Config{
		Host:     sink.Host(),
		Port:     sink.Port(),
		TLS:      email.TLSNone,
		From:     "kundenservice@stadtwerke-musterstadt.de",
		FromName: "Stadtwerke Musterstadt",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sender.Close(ctx)

	rc, err := sender.Send(ctx, channels.Message{
		Key:     "d-1.email",
		Channel: channels.Email,
		To:      "erika@example.org",
		ToName:  "Erika Mustermann",
		Subject: "Ihr Vertrag endet bald – Grüße aus Musterstadt",
		Text:    "Hallo Frau Mustermann, …",
		HTML:    "<p>Hallo Frau Mustermann, …</p>",
	})
	if err != nil {
		log.Fatal(err)
	}
	got := sink.Received("erika@example.org")[0]
	fmt.Println(rc.ProviderID)
	fmt.Println(got.Subject)
	fmt.Println(got.Parts)
	// Output:
	// d-1.email@stadtwerke-musterstadt.de
	// Ihr Vertrag endet bald – Grüße aus Musterstadt
	// [text/plain text/html]
}
