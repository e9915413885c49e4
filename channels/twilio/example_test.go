package twilio_test

import (
	"context"
	"fmt"
	"log"

	"github.com/dialogwerk/dialogwerk/channels"
	"github.com/dialogwerk/dialogwerk/channels/twilio"
	"github.com/dialogwerk/dialogwerk/channels/twiliosim"
)

// Sending an SMS and a WhatsApp template through a local Twilio stand-in.
func Example() {
	ctx := context.Background()
	sim := twiliosim.New(twiliosim.Config{})
	if err := sim.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer sim.Stop(ctx)

	sender, err := twilio.New(twilio.Config{
		AccountSID:   sim.AccountSID(),
		AuthToken:    sim.AuthToken(),
		From:         "Stadtwerk",
		WhatsAppFrom: "+4930123456",
		BaseURL:      sim.URL(), // leave empty for api.twilio.com
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sender.Close()

	rc, err := sender.Send(ctx, channels.Message{
		Key:     "decision-4711/sms",
		Channel: channels.SMS,
		To:      "+4915112345678",
		Text:    "Ihr Vertrag endet am 31.12. Jetzt verlängern: https://sw.example/v",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("SMS segments:", rc.Segments)

	_, err = sender.Send(ctx, channels.Message{
		Key:              "decision-4711/whatsapp",
		Channel:          channels.WhatsApp,
		To:               "+4915112345678",
		ContentSID:       "HX0123456789abcdef0123456789abcdef",
		ContentVariables: map[string]string{"1": "Erika"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range sim.MessagesTo("+4915112345678") {
		fmt.Println(m.Channel, m.From, m.Body+m.ContentSID)
	}

	sim.FailNext("+4915112345678", twiliosim.RateLimited())
	_, err = sender.Send(ctx, channels.Message{Key: "decision-4712/sms", Channel: channels.SMS, To: "+4915112345678", Text: "Hallo"})
	fmt.Println(channels.IsTransient(err), channels.Code(err))
	// Output:
	// SMS segments: 1
	// sms Stadtwerk Ihr Vertrag endet am 31.12. Jetzt verlängern: https://sw.example/v
	// whatsapp whatsapp:+4930123456 HX0123456789abcdef0123456789abcdef
	// true 20429
}
