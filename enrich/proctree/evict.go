package proctree

import "time"

// setLink points one of p's links (parent, group, session, entry) at target,
// keeping the targets' live reference counts. Exited processes' links are not
// counted: they keep nothing in the table.
func (t *Table) setLink(p *proc, slot **proc, target *proc) {
	old := *slot
	if old == target {
		return
	}
	*slot = target
	if p.Exited {
		return
	}
	if target != nil {
		target.liveRefs++
	}
	if old != nil {
		old.liveRefs--
		t.maybeEvict(old)
	}
}

// markExited ends p: its links stop counting and it waits out its grace.
func (t *Table) markExited(p *proc, end time.Duration) {
	p.Exited = true
	p.End = end
	t.stats.Live--
	for _, l := range [...]*proc{p.parent, p.group, p.session, p.entry} {
		if l != nil {
			l.liveRefs--
			t.maybeEvict(l)
		}
	}
	t.exited.push(p)
}

// expire ends the grace of exited processes whose time is up (or that exceed
// MaxExited): they drop their links, so no chain of dead ancestors is kept, and
// leave the table unless something live still links to them.
func (t *Table) expire() {
	for t.exited.len() > 0 {
		p := t.exited.front()
		if p.End+t.cfg.Grace > t.now && t.exited.len() <= t.cfg.MaxExited {
			break
		}
		t.exited.pop()
		p.expired = true
		p.parent, p.group, p.session, p.entry = nil, nil, nil, nil
		t.maybeEvict(p)
	}
	t.shrink()
}

func (t *Table) maybeEvict(p *proc) {
	if !p.expired || p.liveRefs > 0 || t.procs[p.PID] != p {
		return
	}
	delete(t.procs, p.PID)
	t.stats.Evicted++
}

// shrink rebuilds the pid map after it has emptied out: Go maps keep the buckets
// of their largest size, so a burst of processes would otherwise pin memory.
func (t *Table) shrink() {
	if t.peak < 4096 || len(t.procs) > t.peak/4 {
		return
	}
	m := make(map[uint32]*proc, len(t.procs))
	for k, v := range t.procs {
		m[k] = v
	}
	t.procs = m
	t.peak = len(m)
}

// queue is a FIFO of exited records.
type queue struct {
	items []*proc
	head  int
}

func (q *queue) len() int     { return len(q.items) - q.head }
func (q *queue) front() *proc { return q.items[q.head] }
func (q *queue) push(p *proc) { q.items = append(q.items, p) }
func (q *queue) pop() (p *proc) {
	p = q.items[q.head]
	q.items[q.head] = nil
	q.head++
	// Compact once the consumed half dominates, so the slice stays bounded.
	if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return p
}
