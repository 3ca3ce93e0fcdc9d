# message: plain.eml
redirect "forward@example.org";
