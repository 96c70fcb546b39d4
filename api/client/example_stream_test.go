package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/switchboard-dev/switchboard/api/client"
)

// A stream of a record, one path of another, a live collection and
// events: its snapshots first, then every change. Stream reconnects by
// itself and resumes where it was, with no frame lost or doubled.
func ExampleClient_Stream() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.NewClient(serverURL) // client.WithToken(token) in auth mode
	c.Put(ctx, "example/stream/driver/14", map[string]any{"position": map[string]int{"x": 1}}, client.Cond{})

	s, err := c.Stream(ctx,
		client.PathSub("example/stream/driver/14", "position.x"),
		client.CollectionSub("example/stream/driver/"),
		client.EventSub("example/chat/*"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	c.PutPath(ctx, "example/stream/driver/14", "position.x", 2, client.Cond{})
	c.Emit(ctx, "example/chat/lobby", "hello")

	for f := range s.Frames() {
		switch f.Event {
		case "snapshot", "record":
			r, _ := f.AsRecord()
			fmt.Println(r.Op, r.Name, r.Path, r.Version, string(r.Data))
		case "synced":
			sy, _ := f.AsSynced()
			fmt.Println("synced", sy.Record, sy.Count)
		case "event":
			e, _ := f.AsEvent()
			fmt.Println("event", e.Name, string(e.Data))
			return
		}
	}
	// Unordered output:
	// snapshot example/stream/driver/14 position.x 1 1
	// snapshot example/stream/driver/14  1 {"position":{"x":1}}
	// synced example/stream/driver/* 1
	// patch example/stream/driver/14  2 {"position":{"x":2}}
	// patch example/stream/driver/14 position.x 2 2
	// event example/chat/lobby "hello"
}

// Subscriptions change while the stream stays open: the added record's
// snapshot follows.
func ExampleStream_Add() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.NewClient(serverURL)
	c.Put(ctx, "example/add/a", "A", client.Cond{})
	s, err := c.Stream(ctx) // no subscription yet
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Add(ctx, client.RecordSub("example/add/a")); err != nil {
		log.Fatal(err)
	}
	for f := range s.Frames() {
		if f.Event == "snapshot" {
			r, _ := f.AsRecord()
			fmt.Println(r.Name, r.Version, string(r.Data))
			return
		}
	}
	// Output:
	// example/add/a 1 "A"
}

// Typed callbacks instead of the channel: Handle calls them until the
// stream ends.
func ExampleStream_Handle() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.NewClient(serverURL)
	s, err := c.Stream(ctx, client.RecordSub("example/handle/doc"), client.EventSub("example/handle/done"))
	if err != nil {
		log.Fatal(err)
	}
	c.Put(ctx, "example/handle/doc", map[string]int{"n": 1}, client.Cond{})
	c.Emit(ctx, "example/handle/done", nil)
	err = s.Handle(client.Handlers{
		Record: func(r client.RecordFrame) { fmt.Println(r.Op, r.Version, string(r.Data)) },
		Event:  func(e client.EventFrame) { s.Close() },
	})
	fmt.Println("ended:", err)
	// Output:
	// snapshot 0 null
	// set 1 {"n":1}
	// ended: <nil>
}

// Logging in: the server asks the application's auth webhook about the
// credentials, and the client keeps the token it answers, refreshing it
// before it expires.
func ExampleClient_Login() {
	ctx := context.Background()
	c := client.NewClient(serverURL, client.WithAutoRefresh(5*time.Minute))
	tok, err := c.Login(ctx, map[string]string{"user": "ada", "password": "secret"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tok.ID, string(tok.ClientData), time.Until(tok.ExpiresAt) > 59*time.Minute)
	if _, err := c.Put(ctx, "example/login/ada", "written as ada", client.Cond{}); err != nil {
		log.Fatal(err)
	}
	if err := c.Logout(ctx); err != nil { // the token is revoked everywhere
		log.Fatal(err)
	}
	_, err = c.Login(ctx, map[string]string{"user": "ada", "password": "wrong"})
	fmt.Println(err)
	// Output:
	// ada {"greeting":"hello ada"} true
	// 401 UNAUTHENTICATED: the credentials were refused
}
