# message: plain.eml
redirect "\"joe smith\"@example.org";
