package client_test

import (
	"context"
	"errors"
	"log"
	"os"
	"os/signal"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/api/client"
)

// A backend that serves the RPC "add-two" until it is stopped. It needs no
// inbound port: it long-polls the server.
func ExampleClient_Provide() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := client.New("http://localhost:8080", os.Getenv("SWITCHBOARD_TOKEN"))
	err := c.Provide(ctx, []string{"add-two"}, func(ctx context.Context, req client.Request) (any, error) {
		var n float64
		if err := req.Decode(&n); err != nil {
			return nil, err // the caller gets 502 RPC_ERROR with this message
		}
		if n < 0 {
			return nil, client.ErrReject // another provider may take it
		}
		return n + 2, nil
	}, client.WithProviderID("adder-1"))
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// Calling an RPC: the wait is the context's deadline (at most 60s).
func ExampleClient_Call() {
	c := client.New("http://localhost:8080", os.Getenv("SWITCHBOARD_TOKEN"))
	var sum float64
	err := c.Call(context.Background(), "add-two", 3, &sum)
	switch {
	case api.IsCode(err, api.CodeNoRPCProvider):
		log.Print("no provider is polling for add-two")
	case err != nil:
		log.Fatal(err)
	default:
		log.Print(sum) // 5
	}
}
