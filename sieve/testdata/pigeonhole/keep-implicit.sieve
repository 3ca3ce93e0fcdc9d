# message: plain.eml
# nothing: implicit keep
