# message: plain.eml
redirect "Joe <joe@example.org>";
