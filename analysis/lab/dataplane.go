// Command dataplane is the lab's stand-in for the data plane of the April 2026
// outage: a GetPostRecord handler that looks up every URI of a batch in
// memcached with one goroutine per URI, through a client whose idle pool is
// capped (it dials when no idle connection is free and closes connections
// beyond the cap on release, exactly as gomemcache's getFreeConn/putFreeConn
// do). It also plays the callers (steady small-batch user traffic and a batch
// caller that sends a few huge batches after a quiet baseline) and writes the
// request log, the error log, its goroutine count every second, and events.
// Run with -mode=sampler it is instead the separate sampler process: every
// second, the namespace's TIME_WAIT, memcached's connection counts and the
// data plane's OS threads.
//
// Our own small client rather than Debian's gomemcache: that snapshot has a
// fixed 2-connection idle pool and no dial hook, and the fixed-source and
// random-source variants need one (net.Dialer.LocalAddr), as does an idle cap
// scaled from production's 1,000. The network errors are Go's own either way.
//
// Only loopback: memcached's address must be 127.0.0.0/8. Every loop is
// bounded by the -seconds schedule; the Python runner kills us by PID too.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

type config struct {
	variant       string
	mcAddr        string
	out           string
	seconds       int
	baseline      int
	batches       int
	batchEvery    time.Duration
	batchSize     int
	userRate      int
	idlePool      int
	limit         int
	keys          int
	fixedSource   string
	opTimeout     time.Duration
	fallbackDelay time.Duration
	seed          int64
	batchCaller   string
}

// ---- the memcached client: capped idle pool, dial when none is free --------

type conn struct {
	nc net.Conn
	rw *bufio.ReadWriter
}

type client struct {
	addr    string
	maxIdle int
	timeout time.Duration
	source  func() *net.TCPAddr // nil: the kernel picks the source address

	mu   sync.Mutex
	idle []*conn

	dials      atomic.Int64
	dialErrors atomic.Int64
}

func (c *client) getConn() (*conn, error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return cn, nil
	}
	c.mu.Unlock()
	d := net.Dialer{Timeout: c.timeout}
	if c.source != nil {
		d.LocalAddr = c.source()
	}
	c.dials.Add(1)
	nc, err := d.Dial("tcp", c.addr)
	if err != nil {
		c.dialErrors.Add(1)
		return nil, err
	}
	return &conn{nc: nc, rw: bufio.NewReadWriter(bufio.NewReader(nc), bufio.NewWriter(nc))}, nil
}

// putConn returns a healthy connection to the idle pool, closing it when
// the pool already holds maxIdle connections (the closed socket then sits
// in TIME_WAIT on this side for 60 s).
func (c *client) putConn(cn *conn) {
	c.mu.Lock()
	if len(c.idle) >= c.maxIdle {
		c.mu.Unlock()
		cn.nc.Close()
		return
	}
	c.idle = append(c.idle, cn)
	c.mu.Unlock()
}

var errMiss = errors.New("memcache: cache miss")

func (c *client) do(fn func(*conn) error) error {
	cn, err := c.getConn()
	if err != nil {
		return err
	}
	cn.nc.SetDeadline(time.Now().Add(c.timeout))
	err = fn(cn)
	if err == nil || err == errMiss {
		c.putConn(cn)
	} else {
		cn.nc.Close()
	}
	return err
}

func (c *client) get(key string) ([]byte, error) {
	var val []byte
	err := c.do(func(cn *conn) error {
		if _, err := fmt.Fprintf(cn.rw, "get %s\r\n", key); err != nil {
			return err
		}
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		for {
			line, err := cn.rw.ReadSlice('\n')
			if err != nil {
				return err
			}
			if string(line) == "END\r\n" {
				if val == nil {
					return errMiss
				}
				return nil
			}
			f := strings.Fields(string(line))
			if len(f) != 4 || f[0] != "VALUE" {
				return fmt.Errorf("memcache: unexpected line %q", line)
			}
			n, err := strconv.Atoi(f[3])
			if err != nil {
				return err
			}
			val = make([]byte, n+2)
			if _, err := ioReadFull(cn.rw, val); err != nil {
				return err
			}
			val = val[:n]
		}
	})
	return val, err
}

func (c *client) set(key string, value []byte) error {
	return c.do(func(cn *conn) error {
		fmt.Fprintf(cn.rw, "set %s 0 0 %d\r\n", key, len(value))
		cn.rw.Write(value)
		cn.rw.WriteString("\r\n")
		if err := cn.rw.Flush(); err != nil {
			return err
		}
		line, err := cn.rw.ReadSlice('\n')
		if err != nil {
			return err
		}
		if string(line) != "STORED\r\n" {
			return fmt.Errorf("memcache: unexpected response %q", line)
		}
		return nil
	})
}

func ioReadFull(r *bufio.ReadWriter, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ---- capture writers ---------------------------------------------------------

type jsonlog struct {
	mu     sync.Mutex
	w      *bufio.Writer
	f      *os.File
	closed bool // after the last metric sample: later lines would cover a partial second
}

func newLog(path string) *jsonlog {
	f, err := os.Create(path)
	if err != nil {
		fatal(err)
	}
	return &jsonlog{w: bufio.NewWriterSize(f, 1<<20), f: f}
}

func (l *jsonlog) write(line []byte) {
	l.mu.Lock()
	if !l.closed {
		l.w.Write(line)
		l.w.WriteByte('\n')
	}
	l.mu.Unlock()
}

func (l *jsonlog) flush() {
	l.mu.Lock()
	l.w.Flush()
	l.mu.Unlock()
}

// seal drops every later line, so the logs end with the last whole second.
func (l *jsonlog) seal() {
	l.mu.Lock()
	l.closed = true
	l.w.Flush()
	l.mu.Unlock()
}

func (l *jsonlog) close() {
	l.seal()
	l.f.Close()
}

type requestLine struct {
	Time       string  `json:"time"`
	Level      string  `json:"level"`
	Msg        string  `json:"msg"`
	Method     string  `json:"method"`
	Caller     string  `json:"caller"`
	URIs       int     `json:"uris"`
	Status     string  `json:"status"`
	DurationMs float64 `json:"duration_ms"`
	Host       string  `json:"host"`
	DC         string  `json:"dc"`
}

type errorLine struct {
	Time   string `json:"time"`
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	URI    string `json:"uri"`
	Error  string `json:"error"`
	Caller string `json:"caller"`
	Host   string `json:"host"`
}

func now() string { return time.Now().UTC().Format(tsLayout) }

func csvField(s string) string {
	if strings.ContainsAny(s, ",\"\n") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// ---- the data plane ----------------------------------------------------------

const host = "lab-dp"

type dataplane struct {
	cfg      config
	mc       *client
	requests *jsonlog
	errs     *jsonlog
}

func (d *dataplane) logError(msg, uri, caller string, err error) {
	b, _ := json.Marshal(errorLine{now(), "ERROR", msg, uri, err.Error(), caller, host})
	d.errs.write(b)
}

// lookup fetches one post: from the cache, else from the database (a fixed
// delay standing in for Scylla), writing a miss back into the cache. Every
// failed cache operation logs an error line, as the real service did.
func (d *dataplane) lookup(uri, caller string) error {
	_, err := d.mc.get(uri)
	if err == nil {
		return nil
	}
	time.Sleep(d.cfg.fallbackDelay)
	if err != errMiss {
		d.logError("failed to get post cache item", uri, caller, err)
		return err
	}
	if serr := d.mc.set(uri, []byte(uri)); serr != nil {
		d.logError("failed to set post cache item", uri, caller, serr)
	}
	return nil
}

// GetPostRecord looks every URI up concurrently, one goroutine per URI; with
// a limit (the fix) at most limit lookups of this request run at once.
func (d *dataplane) GetPostRecord(caller string, uris []string) {
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Bool
	var sem chan struct{}
	if d.cfg.limit > 0 {
		sem = make(chan struct{}, d.cfg.limit)
	}
	for _, u := range uris {
		if sem != nil {
			sem <- struct{}{}
		}
		wg.Add(1)
		go func(u string) {
			defer wg.Done()
			if sem != nil {
				defer func() { <-sem }()
			}
			if d.lookup(u, caller) != nil {
				failed.Store(true)
			}
		}(u)
	}
	wg.Wait()
	status := "ok"
	if failed.Load() {
		status = "error"
	}
	ms := float64(time.Since(start).Microseconds()) / 1000
	// Stamped with the arrival (the line is written when the request ends), so
	// a caller's load shows when it arrived, not when a stalled batch gave up.
	b, _ := json.Marshal(requestLine{start.UTC().Format(tsLayout), "INFO", "rpc", "GetPostRecord", caller, len(uris),
		status, ms, host, "lab"})
	d.requests.write(b)
}

func uriOf(i int) string {
	return fmt.Sprintf("at://did:plc:lab%04d/app.bsky.feed.post/%07d", i%997, i)
}

func (d *dataplane) pick(rng *rand.Rand, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = uriOf(rng.Intn(d.cfg.keys))
	}
	return out
}

// ---- callers -----------------------------------------------------------------

type userCaller struct {
	name    string
	share   float64 // of the user lookups per second
	maxURIs int     // batch sizes uniform in 1..maxURIs
}

var userCallers = []userCaller{{"appview", 0.75, 20}, {"notifications", 0.25, 12}}

// runUsers sends small batches at a steady pace until stop: each caller's
// request rate is chosen so its lookups per second match its share.
func (d *dataplane) runUsers(uc userCaller, seed int64, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	rng := rand.New(rand.NewSource(seed))
	meanURIs := float64(uc.maxURIs+1) / 2
	rps := uc.share * float64(d.cfg.userRate) / meanURIs
	tick := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer tick.Stop()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			uris := d.pick(rng, 1+rng.Intn(uc.maxURIs))
			inflight.Add(1)
			go func() { defer inflight.Done(); d.GetPostRecord(uc.name, uris) }()
		}
	}
}

// ---- metrics -----------------------------------------------------------------

func sockstatTW() (tw, inuse float64) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 1; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i+1], 64)
			switch f[i] {
			case "tw":
				tw = v
			case "inuse":
				inuse = v
			}
		}
	}
	return tw, inuse
}

type statsConn struct {
	nc net.Conn
	r  *bufio.Reader
}

// memcachedStats reads curr_connections and total_connections over one
// connection opened before the load starts (so it works while ports are gone).
func (s *statsConn) read() (curr, total float64, ok bool) {
	s.nc.SetDeadline(time.Now().Add(900 * time.Millisecond))
	if _, err := s.nc.Write([]byte("stats\r\n")); err != nil {
		return 0, 0, false
	}
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return 0, 0, false
		}
		if line == "END\r\n" {
			return curr, total, true
		}
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "STAT" {
			switch f[1] {
			case "curr_connections":
				curr, _ = strconv.ParseFloat(f[2], 64)
			case "total_connections":
				total, _ = strconv.ParseFloat(f[2], 64)
			}
		}
	}
}

type metricsWriter struct {
	w *bufio.Writer
	f *os.File
}

// row writes one sample in the CSV long form: time,metric,value,instance.
func (m *metricsWriter) row(ts, metric string, v float64, instance string) {
	fmt.Fprintf(m.w, "%s,%s,%s,%s\n", ts, metric, strconv.FormatFloat(v, 'f', -1, 64),
		csvField(instance))
}

// sample writes what only this process knows (goroutines, dials), stamped with
// the scheduled second: under load the sampler runs late, and a late sample
// must not leave a gap or land on the next second.
func (d *dataplane) sample(m *metricsWriter, at time.Time) {
	ts := at.UTC().Format(tsLayout)
	m.row(ts, "go_goroutines", float64(runtime.NumGoroutine()), host)
	// every dial the client attempted, failed ones included: the fan-out as the
	// client sees it (memcached only counts the connections it accepted)
	m.row(ts, "memcache_client_dials_total", float64(d.mc.dials.Load()), host)
	m.w.Flush()
	d.requests.flush()
	d.errs.flush()
}

// ---- the sampler: a separate process, so the data plane's load cannot starve it

func procThreads(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Threads:") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[8:]), 64)
			return v
		}
	}
	return -1
}

// runSampler samples, every whole second until the data plane (pid) exits
// or seconds pass: the namespace's TIME_WAIT and in-use sockets, memcached's
// connection counts (over one connection opened before the load) and the
// data plane's OS threads.
func runSampler(cfg config, pid int) {
	nc := dialRetry(cfg.mcAddr)
	st := &statsConn{nc: nc, r: bufio.NewReader(nc)}
	f, err := os.Create(filepath.Join(cfg.out, "sampler-metrics.csv"))
	if err != nil {
		fatal(err)
	}
	defer f.Close()
	m := &metricsWriter{w: bufio.NewWriter(f), f: f}
	t0 := time.Now().Truncate(time.Second)
	for i := 1; i <= cfg.seconds; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		time.Sleep(time.Until(at))
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			break
		}
		ts := at.UTC().Format(tsLayout)
		tw, inuse := sockstatTW()
		m.row(ts, "node_sockstat_TCP_tw", tw, host)
		m.row(ts, "node_sockstat_TCP_inuse", inuse, host)
		if curr, total, ok := st.read(); ok {
			m.row(ts, "memcached_current_connections", curr, "memcached")
			m.row(ts, "memcached_connections_total", total, "memcached")
		}
		if n := procThreads(pid); n > 0 {
			m.row(ts, "go_threads", n, host)
		}
		m.w.Flush()
	}
}

// ---- main --------------------------------------------------------------------

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "dataplane:", err)
	os.Exit(1)
}

// dialRetry connects to memcached, which may still be starting (up to 5 s).
func dialRetry(addr string) net.Conn {
	var err error
	for i := 0; i < 100; i++ {
		var nc net.Conn
		if nc, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			return nc
		}
		time.Sleep(50 * time.Millisecond)
	}
	fatal(fmt.Errorf("memcached at %s not reachable: %w", addr, err))
	return nil
}

func warm(addr string, keys int) {
	nc := dialRetry(addr)
	defer nc.Close()
	w := bufio.NewWriterSize(nc, 1<<16)
	for i := 0; i < keys; i++ {
		u := uriOf(i)
		fmt.Fprintf(w, "set %s 0 0 %d noreply\r\n%s\r\n", u, len(u), u)
	}
	w.WriteString("get " + uriOf(0) + "\r\n")
	if err := w.Flush(); err != nil {
		fatal(err)
	}
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(nc)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			fatal(fmt.Errorf("warming memcached: %w", err))
		}
		if line == "END\r\n" {
			return
		}
	}
}

func main() {
	var cfg config
	flag.StringVar(&cfg.variant, "variant", "naive", "naive | fixed-source | random-source | bounded")
	flag.StringVar(&cfg.mcAddr, "memcached", "127.0.0.1:11211", "memcached address (loopback)")
	flag.StringVar(&cfg.out, "out", ".", "capture directory")
	flag.IntVar(&cfg.seconds, "seconds", 40, "total seconds of load, then exit")
	flag.IntVar(&cfg.baseline, "baseline", 10, "quiet seconds before the batch caller starts")
	flag.IntVar(&cfg.batches, "batches", 8, "number of large batches")
	flag.DurationVar(&cfg.batchEvery, "batch-every", time.Second, "interval between batches")
	flag.IntVar(&cfg.batchSize, "batch-size", 2000, "URIs per large batch")
	flag.IntVar(&cfg.userRate, "user-rate", 200, "user lookups per second (small batches)")
	flag.IntVar(&cfg.idlePool, "idle-pool", 100, "idle connections kept (gomemcache MaxIdleConns)")
	flag.IntVar(&cfg.limit, "limit", 0, "concurrent lookups per request (0: unbounded)")
	flag.IntVar(&cfg.keys, "keys", 20000, "posts warmed into the cache")
	flag.StringVar(&cfg.fixedSource, "fixed-source", "127.32.0.1", "source address of fixed-source")
	flag.DurationVar(&cfg.opTimeout, "timeout", 2*time.Second, "dial and socket timeout")
	flag.DurationVar(&cfg.fallbackDelay, "fallback-delay", 5*time.Millisecond, "database fetch on a cache failure")
	flag.Int64Var(&cfg.seed, "seed", 1, "random seed")
	flag.StringVar(&cfg.batchCaller, "batch-caller", "feed-indexer", "name of the batch caller")
	mode := flag.String("mode", "dataplane", "dataplane | sampler")
	pid := flag.Int("pid", 0, "sampler: the data plane's PID")
	flag.Parse()

	mcHost, _, err := net.SplitHostPort(cfg.mcAddr)
	if err != nil || !net.ParseIP(mcHost).IsLoopback() {
		fatal(fmt.Errorf("memcached address %q is not loopback", cfg.mcAddr))
	}
	mc := &client{addr: cfg.mcAddr, maxIdle: cfg.idlePool, timeout: cfg.opTimeout}
	srcRng := rand.New(rand.NewSource(cfg.seed + 99))
	var srcMu sync.Mutex
	switch cfg.variant {
	case "naive":
	case "fixed-source":
		ip := net.ParseIP(cfg.fixedSource)
		if ip == nil || !ip.IsLoopback() {
			fatal(fmt.Errorf("fixed source %q is not loopback", cfg.fixedSource))
		}
		mc.source = func() *net.TCPAddr { return &net.TCPAddr{IP: ip} }
	case "random-source":
		mc.source = func() *net.TCPAddr {
			srcMu.Lock()
			defer srcMu.Unlock()
			return &net.TCPAddr{IP: net.IPv4(127, byte(1+srcRng.Intn(254)), byte(srcRng.Intn(256)),
				byte(1+srcRng.Intn(254)))}
		}
	case "bounded":
		if cfg.limit == 0 {
			cfg.limit = 50
		}
	default:
		fatal(fmt.Errorf("unknown variant %q", cfg.variant))
	}

	if *mode == "sampler" {
		runSampler(cfg, *pid)
		return
	}
	warm(cfg.mcAddr, cfg.keys)

	d := &dataplane{cfg: cfg, mc: mc,
		requests: newLog(filepath.Join(cfg.out, "requests.jsonl")),
		errs:     newLog(filepath.Join(cfg.out, "dataplane-errors.jsonl"))}
	mf, err := os.Create(filepath.Join(cfg.out, "runtime-metrics.csv"))
	if err != nil {
		fatal(err)
	}
	m := &metricsWriter{w: bufio.NewWriter(mf), f: mf}
	m.w.WriteString("time,metric,value,instance\n")
	evf, err := os.Create(filepath.Join(cfg.out, "events.csv"))
	if err != nil {
		fatal(err)
	}
	ev := bufio.NewWriter(evf)
	ev.WriteString("time,end_time,kind,title,source,detail\n")
	var evMu sync.Mutex
	event := func(ts, end, kind, title, detail string) {
		evMu.Lock()
		defer evMu.Unlock()
		fmt.Fprintf(ev, "%s,%s,%s,%s,lab,%s\n", ts, end, kind, csvField(title), csvField(detail))
		ev.Flush()
	}
	event(now(), "", "note", "lab run: variant "+cfg.variant,
		fmt.Sprintf("idle_pool=%d limit=%d batch_size=%d batches=%d user_rate=%d",
			cfg.idlePool, cfg.limit, cfg.batchSize, cfg.batches, cfg.userRate))

	// Start on a whole second so the first second of the logs is whole too.
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(t0))
	stop := make(chan struct{})
	var users sync.WaitGroup
	for i, uc := range userCallers {
		users.Add(1)
		go d.runUsers(uc, cfg.seed+int64(i), stop, &users)
	}

	// The batch caller: after the quiet baseline, a few huge batches.
	var batchWG sync.WaitGroup
	batchWG.Add(1)
	go func() {
		defer batchWG.Done()
		select {
		case <-time.After(time.Duration(cfg.baseline) * time.Second):
		case <-stop:
			return
		}
		rng := rand.New(rand.NewSource(cfg.seed + 7))
		event(now(), "", "deploy", cfg.batchCaller+" starts calling GetPostRecord",
			fmt.Sprintf("%d batches of %d URIs every %s", cfg.batches, cfg.batchSize, cfg.batchEvery))
		var inflight sync.WaitGroup
		for i := 0; i < cfg.batches; i++ {
			if i > 0 {
				select {
				case <-time.After(cfg.batchEvery):
				case <-stop:
					inflight.Wait()
					return
				}
			}
			uris := d.pick(rng, cfg.batchSize)
			inflight.Add(1)
			go func() { defer inflight.Done(); d.GetPostRecord(cfg.batchCaller, uris) }()
		}
		inflight.Wait()
		event(now(), "", "note", cfg.batchCaller+"'s last batch done", "")
	}()

	// One sample per wall-clock second until the schedule ends; the logs
	// are sealed at the last sample so every second in them is whole.
	for i := 1; i <= cfg.seconds; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		time.Sleep(time.Until(at))
		if i == cfg.seconds {
			d.requests.seal()
			d.errs.seal()
		}
		d.sample(m, at)
	}
	close(stop)
	users.Wait()
	batchWG.Wait()
	// Stay up past the sampler's last whole second, so it samples a live
	// process rather than one tearing its threads down.
	time.Sleep(time.Until(t0.Add(time.Duration(cfg.seconds)*time.Second + 1200*time.Millisecond)))
	event(now(), "", "note", "lab run ends", "")
	d.requests.close()
	d.errs.close()
	m.w.Flush()
	mf.Close()
	evf.Close()
}
