<?php

// Router for PHP's built-in server (`php -S host:port -t public server.php`),
// as Laravel's own server.php: existing files are served as they are.
$uri = urldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?? '/');

if ($uri !== '/' && file_exists(__DIR__.'/public'.$uri)) {
    return false;
}

require_once __DIR__.'/public/index.php';
