module lda

go 1.26.0

require (
	github.com/emersion/go-maildir v0.6.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
