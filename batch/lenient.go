package batch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// lenientOps are the responses we read whose integer fields moto writes as
// JSON floats: DescribeJobs' container "vcpus" (2.0, from a job definition
// with a VCPU resource requirement) and GetLogEvents' "timestamp"
// (milliseconds with a fraction). The SDK refuses those with "strconv.ParseInt:
// parsing "2.0"". AWS itself sends integers, for which this changes nothing.
var lenientOps = map[string]bool{"DescribeJobs": true, "GetLogEvents": true}

// lenientKeys are the fields rewritten: the ones moto sends as floats. Other
// numbers are left alone, should AWS ever add a real float field.
var lenientKeys = map[string]bool{"vcpus": true, "memory": true, "timestamp": true, "ingestionTime": true}

// registerLenient adds, after the SDK's deserializer (so it sees the raw
// response first), a step that rewrites non-integer numbers as integers.
func registerLenient(stack *middleware.Stack) error {
	return stack.Deserialize.Add(middleware.DeserializeMiddlewareFunc("MetaflowLenientNumbers",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleDeserialize(ctx, in)
			if err != nil || !lenientOps[middleware.GetOperationName(ctx)] {
				return out, md, err
			}
			resp, ok := out.RawResponse.(*smithyhttp.Response)
			if !ok || resp.StatusCode/100 != 2 || resp.Body == nil {
				return out, md, err
			}
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr != nil {
				return out, md, fmt.Errorf("read %s response: %w", middleware.GetOperationName(ctx), rerr)
			}
			resp.Body = io.NopCloser(bytes.NewReader(integralNumbers(body)))
			return out, md, nil
		}), middleware.After)
}

// integralNumbers truncates non-integer JSON numbers under lenientKeys to
// integers. Strings (log messages) are untouched. Anything unparsable is
// returned as is for the SDK to report.
func integralNumbers(body []byte) []byte {
	if !bytes.ContainsAny(body, ".eE") {
		return body
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body
	}
	changed := false
	var walk func(any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			for k, e := range t {
				n, ok := e.(json.Number)
				if !ok || !lenientKeys[k] {
					walk(e)
					continue
				}
				if strings.ContainsAny(string(n), ".eE") {
					if f, err := n.Float64(); err == nil && math.Abs(f) < 1<<62 {
						t[k] = json.Number(fmt.Sprint(int64(f)))
						changed = true
					}
				}
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	if !changed {
		return body
	}
	fixed, err := json.Marshal(v)
	if err != nil {
		return body
	}
	return fixed
}
