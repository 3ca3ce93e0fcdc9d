package worker

import (
	"testing"

	"lda/policy"
)

func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name string
		dec  policy.Decision
		code int
		enh  string
	}{
		{"refused by the rules", policy.Decision{Reason: "no rule allows it"}, 550, "5.7.1"},
		{"lda's own inconsistency", policy.Decision{Reason: "refused: internal error: x", Internal: true}, 451, "4.3.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := refusal(tc.dec)
			if st.Code != tc.code || st.Enhanced != tc.enh {
				t.Fatalf("refusal(%+v) = %d %s, want %d %s", tc.dec, st.Code, st.Enhanced, tc.code, tc.enh)
			}
			if st.Cause == nil || st.Cause.Error() != tc.dec.Reason {
				t.Fatalf("the reason is lost: %v", st.Cause)
			}
		})
	}
}
