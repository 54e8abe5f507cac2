<?php

/*
 * Loads Laravel without Composer: Debian's php-laravel-framework installs the
 * framework and its dependencies under /usr/share/php with their own
 * autoloaders. The application's own classes (App\) and the Resonance Laravel
 * package (Resonance\Laravel\, from laravel/src at the repository root) are
 * mapped here as PSR-4, exactly as composer.json's "autoload" would.
 */

require_once '/usr/share/php/Illuminate/autoload.php';

spl_autoload_register(static function (string $class): void {
    static $map = null;
    if ($map === null) {
        $map = [
            'App\\' => dirname(__DIR__).'/app/',
            'Resonance\\Laravel\\' => (getenv('RESONANCE_PACKAGE_SRC') ?: dirname(__DIR__, 4).'/laravel/src').'/',
        ];
    }
    foreach ($map as $prefix => $dir) {
        if (strncmp($class, $prefix, strlen($prefix)) === 0) {
            $file = $dir.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';
            if (is_file($file)) {
                require $file;
            }

            return;
        }
    }
});
