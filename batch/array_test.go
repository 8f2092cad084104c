package batch

import (
	"strings"
	"testing"

	"github.com/metaflow-r/metaflow/engine/scheduler"
)

func TestArraySpecKey(t *testing.T) {
	cases := []struct {
		name  string
		key   string
		array bool
		env   map[string]string
		want  string
		err   string
	}{
		{"a single job's spec", "a/b/_spec.mpk", false, nil, "a/b/_spec.mpk", ""},
		{"AWS: the array index", "a/_array/0-x", true, map[string]string{"AWS_BATCH_JOB_ARRAY_INDEX": "7", "AWS_BATCH_JOB_ID": "p:3"}, "a/_array/0-x/7", ""},
		{"moto: the job id's suffix", "a/_array/0-x/", true, map[string]string{"AWS_BATCH_JOB_ID": "p:3"}, "a/_array/0-x/3", ""},
		{"no index", "a/_array/0-x", true, map[string]string{"AWS_BATCH_JOB_ID": "p"}, "", "has no array index"},
		{"a bad index", "a/_array/0-x", true, map[string]string{"AWS_BATCH_JOB_ARRAY_INDEX": "-1"}, "", "has no array index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := arraySpecKey(tc.key, tc.array, func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestParentOf(t *testing.T) {
	for id, want := range map[string]string{"p:3": "p", "p": "p", "a-b:10": "a-b"} {
		if got := parentOf(id); got != want {
			t.Errorf("parentOf(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestChangedStates(t *testing.T) {
	type m = map[State]int
	cases := []struct {
		name      string
		prev, cur m
		want      string
	}{
		{"first sight lists every state with children", nil, m{StateSubmitted: 3, StateRunning: 2, StateFailed: 0}, "SUBMITTED,RUNNING"},
		{"nothing changed: nothing listed", m{StateRunning: 5}, m{StateRunning: 5, StateFailed: 0}, ""},
		{"one ended as another started: RUNNING and SUCCEEDED", m{StateRunnable: 1, StateRunning: 1}, m{StateRunning: 1, StateSucceeded: 1}, "RUNNING,SUCCEEDED"},
		{"a state emptied: only non-empty ones listed", m{StateRunnable: 2}, m{StateStarting: 2}, "STARTING"},
		{"all done", m{StateRunning: 2}, m{StateSucceeded: 1, StateFailed: 1}, "SUCCEEDED,FAILED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range changedStates(tc.prev, tc.cur) {
				got = append(got, string(s))
			}
			if strings.Join(got, ",") != tc.want {
				t.Fatalf("got %v, want %s", got, tc.want)
			}
		})
	}
}

func TestArrayJobsSetting(t *testing.T) {
	t.Setenv("METAFLOW_BATCH_JOB_QUEUE", "q")
	t.Setenv("METAFLOW_DATASTORE_SYSROOT_S3", "s3://my-bucket/x")
	t.Setenv("AWS_REGION", "us-east-1")
	for _, tc := range []struct {
		v      string
		arrays bool
		err    bool
	}{{"", true, false}, {"1", true, false}, {"true", true, false}, {"0", false, false}, {"FALSE", false, false}, {"maybe", false, true}} {
		t.Setenv("METAFLOW_BATCH_ARRAY_JOBS", tc.v)
		c, err := ConfigFromEnv()
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "METAFLOW_BATCH_ARRAY_JOBS must be 1") {
				t.Errorf("%q: %v, want the setting named", tc.v, err)
			}
			continue
		}
		if err != nil || c.SingleJobs == tc.arrays {
			t.Errorf("%q: single jobs %v, %v; want arrays %v", tc.v, c.SingleJobs, err, tc.arrays)
		}
		ex, err := NewPlugin().NewExecutor()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ex.(scheduler.ArrayExecutor); ok != tc.arrays {
			t.Errorf("%q: the executor runs arrays: %v, want %v", tc.v, ok, tc.arrays)
		}
		if _, ok := ex.(scheduler.Remote); !ok {
			t.Errorf("%q: the executor is not remote", tc.v)
		}
		if _, ok := ex.(scheduler.Preflighter); !ok {
			t.Errorf("%q: the executor has no preflight", tc.v)
		}
	}
}
