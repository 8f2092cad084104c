package batch

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/batch/types"
)

func TestDescribeInstance(t *testing.T) {
	tests := []struct {
		name string
		want instance
		ok   bool
	}{
		{"m5.large", instance{maxVCPUs: 2, memGiB: 8}, true},
		{"m5.xlarge", instance{maxVCPUs: 4, memGiB: 16}, true},
		{"r6i.16xlarge", instance{maxVCPUs: 64, memGiB: 512}, true},
		{"c5.2xlarge", instance{maxVCPUs: 8, memGiB: 16}, true},
		{"c5n.2xlarge", instance{maxVCPUs: 8}, true}, // more memory than 2 GiB/vCPU
		{"m6g.large", instance{maxVCPUs: 2, memGiB: 8}, true},
		{"p3.2xlarge", instance{gpu: true, maxVCPUs: 8}, true},
		{"g4dn.xlarge", instance{gpu: true, maxVCPUs: 4}, true},
		{"gr6.4xlarge", instance{gpu: true, maxVCPUs: 16}, true},
		{"p3", instance{gpu: true}, true},
		{"m5", instance{}, true},
		{"r5.metal", instance{}, true},
		{"optimal", instance{}, true},
		{"default_x86_64", instance{}, true},
		{"t3.medium", instance{}, false},
		{"u-6tb1.metal", instance{}, false},
	}
	for _, tc := range tests {
		got, ok := describeInstance(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("describeInstance(%q) = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func ce(name string, typ types.CEType, cr *types.ComputeResource) types.ComputeEnvironmentDetail {
	return types.ComputeEnvironmentDetail{
		ComputeEnvironmentName: aws.String(name),
		ComputeEnvironmentArn:  aws.String("arn:aws:batch:us-east-1:1:compute-environment/" + name),
		State:                  types.CEStateEnabled, Status: types.CEStatusValid, Type: typ, ComputeResources: cr,
	}
}

func ec2CE(name string, maxvCPUs int32, instanceTypes ...string) types.ComputeEnvironmentDetail {
	return ce(name, types.CETypeManaged, &types.ComputeResource{Type: types.CRTypeEc2, MaxvCpus: aws.Int32(maxvCPUs), InstanceTypes: instanceTypes})
}

func queueOf(ces ...types.ComputeEnvironmentDetail) types.JobQueueDetail {
	q := types.JobQueueDetail{JobQueueName: aws.String("q"), State: types.JQStateEnabled, Status: types.JQStatusValid}
	for i, c := range ces {
		q.ComputeEnvironmentOrder = append(q.ComputeEnvironmentOrder, types.ComputeEnvironmentOrder{Order: aws.Int32(int32(i)), ComputeEnvironment: c.ComputeEnvironmentArn})
	}
	return q
}

func TestCheckQueue(t *testing.T) {
	small := ec2CE("small", 4, "m5.large", "m5.xlarge")
	optimal := ec2CE("optimal", 256, "optimal")
	gpu := ec2CE("gpu", 64, "p3.2xlarge", "p3.8xlarge")
	fargate := ce("fargate", types.CETypeManaged, &types.ComputeResource{Type: types.CRTypeFargate, MaxvCpus: aws.Int32(64)})
	unmanaged := ce("mine", types.CETypeUnmanaged, nil)
	disabled := ec2CE("off", 256, "optimal")
	disabled.State = types.CEStateDisabled
	invalid := ec2CE("broken", 256, "optimal")
	invalid.Status, invalid.StatusReason = types.CEStatusInvalid, aws.String("CLIENT_ERROR - role missing")
	unknown := ec2CE("odd", 8, "x9z.superlarge")
	noState := ce("nostate", types.CETypeUnmanaged, nil) // as moto describes one created without a state
	noState.State, noState.Status = "", ""

	tests := []struct {
		name string
		q    types.JobQueueDetail
		ces  []types.ComputeEnvironmentDetail
		r    Resources
		want string // "" for accepted, else a part of the error
	}{
		{"default fits", queueOf(small), []types.ComputeEnvironmentDetail{small}, Resources{}, ""},
		{"too many vCPUs for maxvCpus", queueOf(small), []types.ComputeEnvironmentDetail{small}, Resources{VCPUs: 8}, "maxvCpus is 4"},
		{"too much memory for every type", queueOf(small), []types.ComputeEnvironmentDetail{small}, Resources{MemoryMB: 60000}, "m5.xlarge has 16 GiB"},
		{"memory fits the larger type", queueOf(small), []types.ComputeEnvironmentDetail{small}, Resources{MemoryMB: 12000}, ""},
		{"vCPUs above any type's size", queueOf(ec2CE("m", 64, "m5.large")), []types.ComputeEnvironmentDetail{ec2CE("m", 64, "m5.large")}, Resources{VCPUs: 4}, "m5.large has 2 vCPUs"},
		{"CE missing from the description", queueOf(small), nil, Resources{}, "not found"},
		{"gpu on optimal", queueOf(optimal), []types.ComputeEnvironmentDetail{optimal}, Resources{GPUs: 1}, "optimal has no GPU"},
		{"gpu on a gpu CE after a small one", queueOf(small, gpu), []types.ComputeEnvironmentDetail{small, gpu}, Resources{GPUs: 1, VCPUs: 4}, ""},
		{"17 GPUs", queueOf(gpu), []types.ComputeEnvironmentDetail{gpu}, Resources{GPUs: 17}, "no instance type has 17 GPUs"},
		{"big job on optimal", queueOf(optimal), []types.ComputeEnvironmentDetail{optimal}, Resources{VCPUs: 96, MemoryMB: 700000}, ""},
		{"fargate gpu", queueOf(fargate), []types.ComputeEnvironmentDetail{fargate}, Resources{GPUs: 1}, "Fargate has no GPUs"},
		{"fargate memory", queueOf(fargate), []types.ComputeEnvironmentDetail{fargate}, Resources{MemoryMB: 200000}, "at most 122880 MiB"},
		{"fargate default", queueOf(fargate), []types.ComputeEnvironmentDetail{fargate}, Resources{}, ""},
		{"unmanaged: cannot know", queueOf(unmanaged), []types.ComputeEnvironmentDetail{unmanaged}, Resources{VCPUs: 1000, GPUs: 8}, ""},
		{"unknown instance type: benefit of the doubt", queueOf(unknown), []types.ComputeEnvironmentDetail{unknown}, Resources{MemoryMB: 500000}, ""},
		{"empty state (moto): not refused", queueOf(noState), []types.ComputeEnvironmentDetail{noState}, Resources{}, ""},
		{"disabled CE", queueOf(disabled), []types.ComputeEnvironmentDetail{disabled}, Resources{}, "off: state is DISABLED"},
		{"invalid CE", queueOf(invalid), []types.ComputeEnvironmentDetail{invalid}, Resources{}, "role missing"},
		{"no CE", queueOf(), nil, Resources{}, "no compute environment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkQueue(tc.q, tc.ces, tc.r.WithDefaults())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrUnsatisfiable) {
				t.Fatalf("err = %v, want ErrUnsatisfiable containing %q", err, tc.want)
			}
		})
	}

	q := queueOf(optimal)
	q.State = types.JQStateDisabled
	if err := checkQueue(q, []types.ComputeEnvironmentDetail{optimal}, Resources{}.WithDefaults()); err == nil || !strings.Contains(err.Error(), "DISABLED") {
		t.Errorf("disabled queue: %v", err)
	}
}
