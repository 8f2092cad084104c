package batch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Labels identify the task attempt a job runs. They become the job name and
// the job's tags.
type Labels struct {
	Flow    string
	User    string
	Run     string
	Step    string
	Task    string
	Attempt int
}

const (
	// namePrefix starts every job name we create; Batch names must start
	// with a letter or digit.
	namePrefix = "mf"
	// maxNameLen is Batch's limit for job names.
	maxNameLen = 128
	// truncMark never occurs in an encoded name (an escape is "_" plus two
	// hex digits), so it marks a name that was cut to fit maxNameLen.
	truncMark = "__"
	// hashLen hex digits of sha256 keep cut names of different tasks apart.
	hashLen = 8
	// keepLen is how much of a too-long name survives before the mark.
	keepLen = maxNameLen - len(truncMark) - hashLen
	// maxKeyLen bounds the full encoded identity: it must fit a tag value
	// (256), where it is kept for names that had to be cut.
	maxKeyLen = 256
)

// encodeField maps s onto [A-Za-z0-9_] reversibly: every other byte
// (including "_" and the "-" separator) becomes "_" plus two upper-case hex
// digits. Letters keep their case so decoding is exact although Batch's
// JOB_NAME filter is case-insensitive.
func encodeField(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02X", c)
	}
	return b.String()
}

func decodeField(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+3 > len(s) {
			return "", fmt.Errorf("truncated escape in %q", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("bad escape %q in %q", s[i:i+3], s)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	// Only the canonical encoding is accepted, so one name has one meaning.
	if encodeField(b.String()) != s {
		return "", fmt.Errorf("non-canonical encoding %q", s)
	}
	return b.String(), nil
}

// jobKey is the full, uncut encoded identity of a task attempt.
func jobKey(l Labels) string {
	return strings.Join([]string{
		namePrefix,
		encodeField(l.Flow),
		encodeField(l.User),
		encodeField(l.Run),
		encodeField(l.Step),
		encodeField(l.Task),
		strconv.Itoa(l.Attempt),
	}, "-")
}

// JobName is the Batch job name for a task attempt:
// mf-<flow>-<user>-<run>-<step>-<task>-<attempt>, each field encoded by
// encodeField. Names longer than 128 characters are cut to 118, followed by
// "__" and 8 hex digits of the full name's sha256; such jobs are matched by
// their metaflow.job_key tag instead. The order puts the list filters (flow,
// user, run) first so a JOB_NAME prefix filter can select them.
func JobName(l Labels) string {
	return nameFromKey(jobKey(l))
}

func nameFromKey(key string) string {
	if len(key) <= maxNameLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return key[:keepLen] + truncMark + hex.EncodeToString(sum[:])[:hashLen]
}

// ErrNameCut reports a name that was cut to 128 characters: the identity is
// in the job's metaflow.job_key tag.
var ErrNameCut = fmt.Errorf("job name was cut to %d characters", maxNameLen)

// ParseJobName recovers the labels from a name made by JobName. It returns
// ErrNameCut for cut names and another error for names we did not make.
func ParseJobName(name string) (Labels, error) {
	if strings.Contains(name, truncMark) {
		return Labels{}, ErrNameCut
	}
	return parseKey(name)
}

func parseKey(key string) (Labels, error) {
	parts := strings.Split(key, "-")
	if len(parts) != 7 || parts[0] != namePrefix {
		return Labels{}, fmt.Errorf("not a metaflow job name: %q", key)
	}
	var f [5]string
	for i := range f {
		v, err := decodeField(parts[i+1])
		if err != nil {
			return Labels{}, fmt.Errorf("not a metaflow job name: %q: %w", key, err)
		}
		f[i] = v
	}
	attempt, err := strconv.Atoi(parts[6])
	if err != nil || attempt < 0 {
		return Labels{}, fmt.Errorf("not a metaflow job name: %q: bad attempt", key)
	}
	return Labels{Flow: f[0], User: f[1], Run: f[2], Step: f[3], Task: f[4], Attempt: attempt}, nil
}

// ListFilter selects the jobs of one flow; empty User or Run match any.
type ListFilter struct {
	Flow string
	User string
	Run  string
}

// namePattern is the JOB_NAME filter value for f: the longest prefix shared
// by every matching name, cut or not, followed by "*". The server match is
// case-insensitive, so callers still compare the decoded labels exactly.
func namePattern(f ListFilter) string {
	p := namePrefix + "-" + encodeField(f.Flow) + "-"
	if f.User != "" {
		p += encodeField(f.User) + "-"
		if f.Run != "" {
			p += encodeField(f.Run) + "-"
		}
	}
	if len(p) > keepLen {
		p = p[:keepLen]
	}
	return p + "*"
}

// Match reports whether labels l belong to the jobs f selects.
func (f ListFilter) Match(l Labels) bool {
	return l.Flow == f.Flow && (f.User == "" || l.User == f.User) && (f.Run == "" || l.Run == f.Run)
}

// Tag keys attached to every job (and propagated to its ECS task).
const (
	TagFlow    = "metaflow.flow_name"
	TagUser    = "metaflow.user"
	TagRun     = "metaflow.run_id"
	TagStep    = "metaflow.step_name"
	TagTask    = "metaflow.task_id"
	TagAttempt = "metaflow.attempt"
	// TagJobKey holds the full encoded identity; it is exact where the
	// human-readable tags above had to replace characters.
	TagJobKey = "metaflow.job_key"
)

// tagValue keeps the characters AWS allows in tag values (letters, digits,
// spaces and _.:/=+-@) and replaces the others with "_". It is lossy, which
// is why TagJobKey exists.
func tagValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte(" _.:/=+-@", c) >= 0
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) > 256 {
		b = b[:256]
	}
	return string(b)
}

func labelTags(l Labels) map[string]string {
	return map[string]string{
		TagFlow:    tagValue(l.Flow),
		TagUser:    tagValue(l.User),
		TagRun:     tagValue(l.Run),
		TagStep:    tagValue(l.Step),
		TagTask:    tagValue(l.Task),
		TagAttempt: strconv.Itoa(l.Attempt),
		TagJobKey:  jobKey(l),
	}
}
