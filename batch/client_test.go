package batch

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

func TestResources(t *testing.T) {
	tests := []struct {
		in      Resources
		want    Resources
		wantErr string
	}{
		{Resources{}, Resources{VCPUs: 1, MemoryMB: 4000}, ""},
		{Resources{VCPUs: 8, MemoryMB: 60000, GPUs: 2}, Resources{VCPUs: 8, MemoryMB: 60000, GPUs: 2}, ""},
		{Resources{VCPUs: -1}, Resources{VCPUs: -1, MemoryMB: 4000}, "cpu"},
		{Resources{MemoryMB: 3}, Resources{VCPUs: 1, MemoryMB: 3}, "memory"},
		{Resources{GPUs: -2}, Resources{VCPUs: 1, MemoryMB: 4000, GPUs: -2}, "gpu"},
	}
	for _, tc := range tests {
		got := tc.in.WithDefaults()
		if got != tc.want {
			t.Errorf("%+v.WithDefaults() = %+v, want %+v", tc.in, got, tc.want)
		}
		err := got.validate()
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v.validate() = %v, want error containing %q", got, err, tc.wantErr)
		}
	}
	req := Resources{VCPUs: 2, MemoryMB: 8000, GPUs: 1}.requirements()
	got := map[types.ResourceType]string{}
	for _, r := range req {
		got[r.Type] = aws.ToString(r.Value)
	}
	if fmt.Sprint(got) != fmt.Sprint(map[types.ResourceType]string{"GPU": "1", "MEMORY": "8000", "VCPU": "2"}) {
		t.Errorf("requirements = %v", got)
	}
	if len(Resources{VCPUs: 1, MemoryMB: 4}.requirements()) != 2 {
		t.Error("no GPU requirement expected without GPUs")
	}
}

func TestCheckEnv(t *testing.T) {
	own := aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t", SessionToken: "tok"}
	tests := []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"METAFLOW_DATASTORE_SYSROOT_S3": "s3://b/p", "X": ""}, ""},
		{map[string]string{"AWS_BATCH_FOO": "x"}, "reserved"},
		{map[string]string{"1BAD": "x"}, "not valid"},
		{map[string]string{"A-B": "x"}, "not valid"},
		{map[string]string{"AWS_SECRET_ACCESS_KEY": "s3cr3t"}, "credentials"},
		{map[string]string{"SNEAKY": "tok"}, "credentials"},
		// The key id alone is not a secret; dummy emulator keys are fine.
		{map[string]string{"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "job-only"}, ""},
	}
	for _, tc := range tests {
		err := checkEnv(tc.env, own)
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("checkEnv(%v) = %v, want error containing %q", tc.env, err, tc.wantErr)
		}
	}
	// No credentials at all (anonymous): empty values must not match.
	if err := checkEnv(map[string]string{"X": ""}, aws.Credentials{}); err != nil {
		t.Errorf("checkEnv with no credentials: %v", err)
	}
}

func TestMergeTags(t *testing.T) {
	l := Labels{Flow: "F", User: "u", Run: "1", Step: "s", Task: "2", Attempt: 1}
	tags, err := mergeTags(l, map[string]string{"team": "ds"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{TagFlow: "F", TagUser: "u", TagRun: "1", TagStep: "s", TagTask: "2", TagAttempt: "1", TagJobKey: "mf-F-u-1-s-2-1", "team": "ds"}
	if fmt.Sprint(tags) != fmt.Sprint(want) {
		t.Errorf("tags = %v, want %v", tags, want)
	}
	for _, extra := range []map[string]string{{"aws:x": "y"}, {TagFlow: "other"}} {
		if _, err := mergeTags(l, extra); err == nil {
			t.Errorf("mergeTags(%v): want an error", extra)
		}
	}
	many := map[string]string{}
	for i := 0; i < 44; i++ {
		many[fmt.Sprint("k", i)] = "v"
	}
	if _, err := mergeTags(l, many); err == nil {
		t.Error("51 tags accepted")
	}
}

func TestChunks(t *testing.T) {
	ids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprint("id", i)
		}
		return out
	}
	for n, want := range map[int][]int{0: nil, 1: {1}, 100: {100}, 101: {100, 1}, 150: {100, 50}, 250: {100, 100, 50}} {
		var got []int
		for _, c := range chunks(ids(n), describeBatch) {
			got = append(got, len(c))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("chunks of %d = %v, want %v", n, got, want)
		}
	}
	if got := dedupe([]string{"a", "b", "a", "", "c"}); fmt.Sprint(got) != "[a b c]" {
		t.Errorf("dedupe = %v", got)
	}
}

func TestJobDefName(t *testing.T) {
	r := Resources{VCPUs: 1, MemoryMB: 4000}
	a := jobDefName("rocker/r-ver:4.4.1", r, Container{})
	if !batchName.MatchString(a) || !strings.HasPrefix(a, "metaflow-r-rocker_r-ver_4_4_1-1c-4000m-0g-") {
		t.Errorf("jobDefName = %q", a)
	}
	// Anything that changes the definition changes the name.
	for _, b := range []string{
		jobDefName("rocker/r-ver:4.4.2", r, Container{}),
		jobDefName("rocker/r-ver:4.4.1", Resources{VCPUs: 2, MemoryMB: 4000}, Container{}),
		jobDefName("rocker/r-ver:4.4.1", Resources{VCPUs: 1, MemoryMB: 4000, GPUs: 1}, Container{}),
		jobDefName("rocker/r-ver:4.4.1", r, Container{JobRole: "arn:aws:iam::1:role/x"}),
		jobDefName("rocker_r-ver:4.4.1", r, Container{}), // same slug, other image
	} {
		if b == a {
			t.Errorf("%q shared by two definitions", a)
		}
	}
	long := jobDefName(strings.Repeat("x", 300)+".dkr.ecr.us-east-1.amazonaws.com/r:1", Resources{VCPUs: 96, MemoryMB: 786432, GPUs: 8}, Container{})
	if !batchName.MatchString(long) {
		t.Errorf("jobDefName for a long image = %q (%d chars)", long, len(long))
	}
}

func TestStatusOf(t *testing.T) {
	d := types.JobDetail{
		JobId: aws.String("j1"), JobName: aws.String("mf-F-u-1-s-1-0"), Status: types.JobStatusFailed,
		StatusReason: aws.String("Essential container in task exited"),
		CreatedAt:    aws.Int64(1000), StoppedAt: aws.Int64(3000),
		Attempts: []types.AttemptDetail{{Container: &types.AttemptContainerDetail{
			ExitCode: aws.Int32(137), Reason: aws.String("OutOfMemoryError: Container killed due to memory usage"), LogStreamName: aws.String("jd/default/abc"),
		}}},
	}
	s := statusOf(d)
	if s.Status != StateFailed || !s.Status.Done() || s.ExitCode == nil || *s.ExitCode != 137 ||
		s.LogStream != "jd/default/abc" || !strings.HasPrefix(s.Reason, "OutOfMemoryError") ||
		s.CreatedAt.UnixMilli() != 1000 || !s.StartedAt.IsZero() {
		t.Errorf("statusOf = %+v", s)
	}
	d.Container = &types.ContainerDetail{ExitCode: aws.Int32(1), LogStreamName: aws.String("jd/default/def")}
	if s := statusOf(d); *s.ExitCode != 1 || s.LogStream != "jd/default/def" {
		t.Errorf("container block must win over the attempt: %+v", s)
	}
}

func TestIntegralNumbers(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"jobs":[{"container":{"vcpus":2.0,"memory":512}}]}`, `{"jobs":[{"container":{"memory":512,"vcpus":2}}]}`},
		{`{"events":[{"timestamp":1795698476717.259,"message":"pi is 3.14"}]}`, `{"events":[{"message":"pi is 3.14","timestamp":1795698476717}]}`},
		{`{"vcpus":1e1}`, `{"vcpus":10}`},
		// Other keys keep their floats.
		{`{"weightFactor":0.5,"vcpus":1}`, `{"weightFactor":0.5,"vcpus":1}`},
		// Untouched: nothing to fix (same bytes back), or not JSON.
		{`{"message":"1.5","n":3}`, `{"message":"1.5","n":3}`},
		{`{"n": 3}`, `{"n": 3}`},
		{`not json 1.5`, `not json 1.5`},
	}
	for _, tc := range tests {
		if got := string(integralNumbers([]byte(tc.in))); got != tc.want {
			t.Errorf("integralNumbers(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
