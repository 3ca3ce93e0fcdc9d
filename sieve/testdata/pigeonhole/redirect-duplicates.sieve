# message: plain.eml
redirect "a@example.org";
redirect "a@EXAMPLE.org";
redirect "b@example.org";
