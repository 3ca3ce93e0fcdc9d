module lda

go 1.26.0

require (
	github.com/emersion/go-maildir v0.6.0
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/sys v0.49.0
)
