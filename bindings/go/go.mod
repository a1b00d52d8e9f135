module github.com/librstar/rstar/bindings/go

go 1.19
