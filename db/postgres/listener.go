package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/api"
	"github.com/switchboard-dev/switchboard/db/internal/mailbox"
)

const (
	// ListenerName is the application_name of the listener's connection.
	ListenerName = "switchboard-listener"
	// pingInterval is how long the listener waits for a notification
	// before it checks that the connection is still alive.
	pingInterval = 15 * time.Second
	// connectTimeout bounds a connection attempt and a ping.
	connectTimeout = 10 * time.Second
	// subscribeTimeout bounds how long Subscribe waits for its LISTEN.
	subscribeTimeout = 10 * time.Second
)

// listener is the goroutine that owns the LISTEN connection (dedicated,
// never from the pool, opened from the direct URL: poolers in transaction
// mode cannot LISTEN). It LISTENs on every subscribed topic, hands
// notifications to the subscriptions' queues, pings when idle, and after a
// lost connection reconnects with jittered exponential backoff, LISTENs
// again and wakes every subscription with nil, since notifications sent
// meanwhile are lost.
type listener struct {
	cfg *pgx.ConnConfig
	log *slog.Logger
	// onChanges sees the notifications of the changes topic before their
	// handlers, and says what these get (tail.onChanges); nil: as they came.
	onChanges func(string) (head int64, known, wake bool)
	// onLost is called when a new connection listens, before the
	// subscriptions are woken with nil; may be nil.
	onLost func()

	subs mailbox.Registry // has its own lock, taken after mu, never before

	mu        sync.Mutex
	pending   bool   // subs changed since the loop last looked
	interrupt func() // ends the loop's wait; nil when not waiting
	connected bool
	lastErr   error
	// everConnected: a connection after the first is a reconnect.
	everConnected bool
	reconnects    atomic.Int64
	// pid is the backend of the connection that listens; 0: none.
	pid atomic.Uint32

	// deferred is the highest position announced by notifications read
	// since the listener last read its socket, whose wake-up waits for
	// that read (flushWakes); 0: none.
	deferred atomic.Int64

	ctx    context.Context // ends with close
	cancel context.CancelFunc
	done   chan struct{}
}

func newBus(pool *pgxpool.Pool, directURL string, log *slog.Logger, onChanges func(string) (int64, bool, bool), onLost func()) (*Bus, error) {
	cfg, err := directConfig(directURL)
	if err != nil {
		return nil, fmt.Errorf("parse direct database url: %w", err)
	}
	cfg.RuntimeParams["application_name"] = ListenerName
	l := &listener{cfg: cfg, log: log, onChanges: onChanges, onLost: onLost, lastErr: errors.New("not connected yet"), done: make(chan struct{})}
	// Notifications are handed out by the goroutine that reads them, as
	// pgx reads them (in WaitForNotification, and in any statement of the
	// listener's), not queued by pgx for a later call: it saves pgx's
	// queue and its allocations.
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { l.dispatch(n.Channel, n.Payload) }
	// The wake-ups of the changes topic's notifications wait until pgx
	// has handed out every one it has read and reads the socket again:
	// the notifications of one transaction, or of several that came
	// together, wake the handlers once, for the highest position.
	dial := cfg.DialFunc
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return flushingConn{Conn: c, flush: l.flushWakes}, nil
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return &Bus{pool: pool, l: l}, nil
}

func (l *listener) ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return fmt.Errorf("notification listener is disconnected: %w", l.lastErr)
	}
	return nil
}

func (l *listener) subscribe(topic string, add func() *mailbox.Sub) (cancel func()) {
	if err := checkTopic(topic); err != nil {
		l.log.Error("bus subscription refused", "err", err)
		return func() {}
	}
	s := add()
	l.mu.Lock()
	l.kick()
	connected := l.connected
	l.mu.Unlock()
	if connected {
		// The loop LISTENs within a round trip; disconnected, the nil
		// after the reconnect tells the handler instead.
		t := time.NewTimer(subscribeTimeout)
		select {
		case <-s.Live():
		case <-t.C:
		case <-l.ctx.Done():
		}
		t.Stop()
	}
	return s.Cancel
}

// kick tells the loop that the subscriptions changed; l.mu is held.
func (l *listener) kick() {
	l.pending = true
	if l.interrupt != nil {
		l.interrupt()
	}
}

func (l *listener) close() {
	l.cancel()
	l.mu.Lock()
	if l.interrupt != nil {
		l.interrupt()
	}
	l.mu.Unlock()
	<-l.done
	l.subs.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.connected, l.lastErr = false, errors.New("closed")
}

func (l *listener) run() {
	defer close(l.done)
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     100 * time.Millisecond,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		// Short: while the listener is down /readyz says 503 and changes
		// from other instances wait; a reconnect attempt is cheap.
		MaxInterval: 2 * time.Second,
	}
	for {
		connected, err := l.session()
		if l.ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.connected, l.lastErr = false, err
		l.mu.Unlock()
		if connected {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		l.log.Warn("notification listener disconnected; reconnecting", "err", err, "in", wait)
		select {
		case <-l.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// session connects, LISTENs and hands notifications out until the
// connection fails or the listener closes. connected says whether it got
// as far as listening.
func (l *listener) session() (connected bool, err error) {
	ctx, cancel := context.WithTimeout(l.ctx, connectTimeout)
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(ctx)
	}()
	l.pid.Store(conn.PgConn().PID())
	defer l.pid.Store(0)
	listening := make(map[string]bool)
	netConn := conn.PgConn().Conn()
	interrupt := func() { netConn.SetReadDeadline(time.Now()) }
	var deadline time.Time // the socket's read deadline; zero: none
	for needListen := true; ; {
		if needListen {
			if err := l.listen(conn, listening); err != nil {
				return connected, err
			}
			needListen = false
		}
		if !connected {
			connected = true
			l.log.Info("notification listener connected")
		}
		l.mu.Lock()
		if l.ctx.Err() != nil { // close interrupts only a wait under way
			l.mu.Unlock()
			return connected, l.ctx.Err()
		}
		if l.pending {
			l.mu.Unlock()
			needListen = true
			continue
		}
		// The wait has no context: pgx would start a goroutine to watch
		// one for every wait, that is for every notification. The read
		// deadline of the socket bounds it instead (moved at most once a
		// second: each move costs), and kick and close interrupt it by
		// moving that deadline to now.
		if now := time.Now(); deadline.Sub(now) < pingInterval-time.Second {
			deadline = now.Add(pingInterval)
			if err := netConn.SetReadDeadline(deadline); err != nil {
				l.mu.Unlock()
				return connected, err
			}
		}
		l.interrupt = interrupt
		l.mu.Unlock()

		// Returns once a notification has been handed out (OnNotification).
		err := conn.PgConn().WaitForNotification(context.Background())

		l.mu.Lock()
		l.interrupt = nil
		needListen = l.pending
		l.mu.Unlock()
		if err == nil && l.ctx.Err() == nil {
			continue
		}
		// Anything else runs with its own context, and no deadline.
		var netErr net.Error
		timedOut := err != nil && errors.As(err, &netErr) && netErr.Timeout()
		expired := !time.Now().Before(deadline)
		deadline = time.Time{}
		if err := netConn.SetReadDeadline(deadline); err != nil && !conn.IsClosed() {
			return connected, err
		}
		switch {
		case l.ctx.Err() != nil:
			return connected, l.ctx.Err()
		case conn.IsClosed() || !timedOut:
			return connected, err
		case expired:
			ctx, cancel := context.WithTimeout(l.ctx, connectTimeout)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				return connected, fmt.Errorf("ping: %w", err)
			}
		}
		// Interrupted by a new subscription: listen() takes it.
	}
}

// listen LISTENs on the topics not yet in listening, then marks every
// subscription whose topic is listened to as live; a subscription that
// becomes live is called with nil. After a (re)connect, that is all of them.
func (l *listener) listen(conn *pgx.Conn, listening map[string]bool) error {
	l.mu.Lock()
	l.pending = false
	l.mu.Unlock()
	for _, t := range l.subs.Topics() {
		if listening[t] {
			continue
		}
		ctx, cancel := context.WithTimeout(l.ctx, connectTimeout)
		_, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel(t)}.Sanitize())
		cancel()
		if err != nil {
			return fmt.Errorf("listen %s: %w", t, err)
		}
		listening[t] = true
	}
	l.mu.Lock()
	if !l.connected {
		// A new connection: whatever was sent before it may have been missed.
		if l.onLost != nil {
			l.onLost()
		}
		l.subs.Lost()
		l.connected, l.lastErr = true, nil
		if l.everConnected {
			l.reconnects.Add(1)
		}
		l.everConnected = true
	}
	l.mu.Unlock()
	l.subs.MarkLive(func(t string) bool { return listening[t] })
	return nil
}

// dispatch queues a notification for the subscriptions of its topic. It
// runs on the listener's goroutine, inside pgx's read of the connection:
// it never blocks.
func (l *listener) dispatch(ch, payload string) {
	topic, ok := strings.CutPrefix(ch, channelPrefix)
	if !ok {
		return
	}
	if topic == api.TopicChanges && l.onChanges != nil && strings.HasPrefix(payload, "=") {
		l.changes(payload[1:], true) // decoded from the text itself, not a copy
		return
	}
	p, err := decodePayload(payload)
	if err != nil {
		l.log.Warn("bus notification dropped", "channel", ch, "err", err)
		return
	}
	l.subs.Push(topic, p)
}

// changes hands a notification of the changes topic (its text after the
// "=" marker) to onChanges, and what that returns to the subscriptions,
// as if it came from the database: at once, or, when deferWake (it was
// read from the socket), when the listener next reads it (flushWakes).
// Wakers (Bus.SubscribeWake) get the head; its text is made only for
// subscriptions with a mailbox.
func (l *listener) changes(text string, deferWake bool) {
	head, known, wake := l.onChanges(text)
	switch {
	case !known:
		l.subs.Wake(api.TopicChanges, 0, func() []byte { return []byte(text) })
	case wake && deferWake:
		for {
			d := l.deferred.Load()
			if d >= head || l.deferred.CompareAndSwap(d, head) {
				break
			}
		}
	case wake:
		l.wakeChanges(head)
	}
}

// wakeChanges wakes the handlers of the changes topic for position head.
func (l *listener) wakeChanges(head int64) {
	l.subs.Wake(api.TopicChanges, head, func() []byte { return strconv.AppendInt(nil, head, 10) })
}

// flushWakes wakes the handlers of the changes topic for the wake-up
// deferred, if any. The listener's connection calls it before each read.
func (l *listener) flushWakes() {
	if head := l.deferred.Swap(0); head > 0 {
		l.wakeChanges(head)
	}
}

// flushingConn is the listener's connection to the database: it calls
// flush before each read of the socket, that is once pgx has handed out
// everything it read before.
type flushingConn struct {
	net.Conn
	flush func()
}

func (c flushingConn) Read(p []byte) (int, error) {
	c.flush()
	return c.Conn.Read(p)
}

// Reconnects returns how many times the notification listener connected
// again after losing its connection, for the metrics.
func (b *Bus) Reconnects() int64 { return b.l.reconnects.Load() }
