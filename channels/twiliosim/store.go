package twiliosim

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// store retains the newest messages in a ring, indexed by recipient and SID.
// Adding is O(1); so is dropping the oldest, which is always the oldest of
// its recipient too.
type store struct {
	mu    sync.RWMutex
	ring  []*Message // len == keep
	start int        // index of the oldest message
	n     int        // number of retained messages
	byTo  map[string][]*Message
	bySID map[string]*Message
}

func newStore(keep int) store {
	hint := min(keep, 1<<14)
	return store{
		ring:  make([]*Message, keep),
		byTo:  make(map[string][]*Message, hint),
		bySID: make(map[string]*Message, hint),
	}
}

func (s *store) add(m *Message) {
	recipient := m.Recipient()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == len(s.ring) {
		old := s.ring[s.start]
		key := old.Recipient()
		if rest := s.byTo[key][1:]; len(rest) == 0 {
			delete(s.byTo, key)
		} else {
			s.byTo[key] = rest
		}
		delete(s.bySID, old.SID)
		s.ring[s.start] = m
		s.start = (s.start + 1) % len(s.ring)
	} else {
		s.ring[(s.start+s.n)%len(s.ring)] = m
		s.n++
	}
	s.byTo[recipient] = append(s.byTo[recipient], m)
	s.bySID[m.SID] = m
}

func (s *store) get(sid string) (Message, bool) {
	s.mu.RLock()
	m, ok := s.bySID[sid]
	s.mu.RUnlock()
	if !ok {
		return Message{}, false
	}
	return m.clone(), true
}

func (s *store) to(recipient string) []Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ms := s.byTo[recipient]
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = m.clone()
	}
	return out
}

func (s *store) all() []Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Message, s.n)
	for i := range s.n {
		out[i] = s.ring[(s.start+i)%len(s.ring)].clone()
	}
	return out
}

// newest returns up to limit messages, newest first, all or only those to
// recipient (when not empty).
func (s *store) newest(limit int, recipient string) []Message {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if recipient != "" {
		ms := s.byTo[recipient]
		out := make([]Message, 0, min(limit, len(ms)))
		for i := len(ms) - 1; i >= 0 && len(out) < limit; i-- {
			out = append(out, ms[i].clone())
		}
		return out
	}
	out := make([]Message, 0, min(limit, s.n))
	for i := s.n - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, s.ring[(s.start+i)%len(s.ring)].clone())
	}
	return out
}

func (s *store) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.n
}

func (s *store) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.ring)
	s.start, s.n = 0, 0
	clear(s.byTo)
	clear(s.bySID)
}

func (m *Message) clone() Message {
	c := *m
	c.ContentVariables = maps.Clone(m.ContentVariables)
	c.MediaURLs = slices.Clone(m.MediaURLs)
	return c
}

// rejection is a request the sim answered with an error.
type rejection struct {
	Time     time.Time
	To       string
	Status   int
	Code     int
	Message  string
	Injected bool // by FailNext, FailNextN or FailEvery
}

// rejectLog keeps the newest rejections for the page.
type rejectLog struct {
	mu   sync.Mutex
	ring [100]rejection
	next int
	n    int
}

func (l *rejectLog) add(r rejection) {
	l.mu.Lock()
	l.ring[l.next] = r
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	l.mu.Unlock()
}

// newest returns the retained rejections, newest first.
func (l *rejectLog) newest() []rejection {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]rejection, l.n)
	for i := range l.n {
		out[i] = l.ring[(l.next-1-i+len(l.ring))%len(l.ring)]
	}
	return out
}

func (l *rejectLog) reset() {
	l.mu.Lock()
	l.next, l.n = 0, 0
	l.mu.Unlock()
}
