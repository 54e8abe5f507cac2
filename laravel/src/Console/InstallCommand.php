<?php

namespace Resonance\Laravel\Console;

use Illuminate\Console\Command;
use Illuminate\Filesystem\Filesystem;

/**
 * php artisan resonance:install [--broadcaster=redis|pusher|reverb]
 *
 * Writes config/resonance.php, routes/sockets.php and the .env keys (app id, key, secret
 * shared with Resonance; the broadcaster's settings), then prints the Echo snippet and the
 * command that starts Resonance for this app.
 */
class InstallCommand extends Command
{
    public const BROADCASTERS = [
        'redis' => 'redis: Laravel publishes to Redis, Resonance reads it (Echo socket.io or pusher connector)',
        'pusher' => 'pusher: Laravel calls Resonance\'s Pusher HTTP API (needs pusher/pusher-php-server)',
        'reverb' => 'reverb: Laravel 11+ reverb connection pointed at Resonance (Echo reverb connector)',
    ];

    protected $signature = 'resonance:install
        {--broadcaster= : redis, pusher or reverb}
        {--host=127.0.0.1 : Resonance\'s host as the browser reaches it}
        {--port=6001 : Resonance\'s port}
        {--force : Overwrite config/resonance.php and routes/sockets.php}';

    protected $description = 'Install Resonance: config/resonance.php, routes/sockets.php, .env keys and the Echo snippet';

    public function handle(Filesystem $files)
    {
        $broadcaster = $this->option('broadcaster');
        if (! $broadcaster) {
            $choice = $this->choice('Which broadcaster should Laravel use?', array_values(self::BROADCASTERS), 0);
            $broadcaster = (string) array_search($choice, self::BROADCASTERS, true);
        }
        if (! isset(self::BROADCASTERS[$broadcaster])) {
            $this->error("Unknown broadcaster \"$broadcaster\": choose redis, pusher or reverb.");

            return 1;
        }
        if ($broadcaster === 'reverb' && version_compare($this->laravel->version(), '11.0', '<')) {
            $this->error('The reverb connection arrived with Laravel 11; on Laravel '.$this->laravel->version().' choose pusher (or redis).');

            return 1;
        }
        $host = (string) $this->option('host');
        $port = (string) $this->option('port');

        $this->copy($files, __DIR__.'/../../config/resonance.php', config_path('resonance.php'));
        $this->copy($files, __DIR__.'/../../stubs/sockets.stub', base_path('routes/sockets.php'));

        $env = $this->envValues($broadcaster, $host, $port);
        $written = $this->writeEnv($files, base_path('.env'), $env);
        $this->info('.env: '.($written ? implode(', ', $written) : 'already configured'));

        $this->line('');
        $this->line('<comment>Echo (resources/js/bootstrap.js):</comment>');
        $this->line($this->echoSnippet($broadcaster));
        $this->line('<comment>Start Resonance for this app:</comment>');
        $this->line($this->startCommand($broadcaster));

        return 0;
    }

    private function copy(Filesystem $files, string $from, string $to): void
    {
        if ($files->exists($to) && ! $this->option('force')) {
            $this->line("kept $to (--force overwrites it)");

            return;
        }
        $files->ensureDirectoryExists(dirname($to));
        $files->copy($from, $to);
        $this->info("wrote $to");
    }

    /** @return array<string, string> */
    private function envValues(string $broadcaster, string $host, string $port): array
    {
        $current = $this->readEnv(base_path('.env'));
        $id = $current['RESONANCE_APP_ID'] ?? (string) random_int(100000, 999999);
        $key = $current['RESONANCE_APP_KEY'] ?? strtolower(bin2hex(random_bytes(10)));
        $secret = $current['RESONANCE_APP_SECRET'] ?? bin2hex(random_bytes(16));
        $modern = version_compare($this->laravel->version(), '11.0', '>=');
        $env = [
            'RESONANCE_APP_ID' => $id,
            'RESONANCE_APP_KEY' => $key,
            'RESONANCE_APP_SECRET' => $secret,
            'RESONANCE_HOST' => $host,
            'RESONANCE_PORT' => $port,
            ($modern ? 'BROADCAST_CONNECTION' : 'BROADCAST_DRIVER') => $broadcaster,
        ];
        if ($broadcaster === 'pusher') {
            $env += [
                'PUSHER_APP_ID' => '${RESONANCE_APP_ID}',
                'PUSHER_APP_KEY' => '${RESONANCE_APP_KEY}',
                'PUSHER_APP_SECRET' => '${RESONANCE_APP_SECRET}',
                'PUSHER_HOST' => '${RESONANCE_HOST}',
                'PUSHER_PORT' => '${RESONANCE_PORT}',
                'PUSHER_SCHEME' => 'http',
                'PUSHER_APP_CLUSTER' => 'mt1',
                'VITE_PUSHER_APP_KEY' => '"${PUSHER_APP_KEY}"',
                'VITE_PUSHER_HOST' => '"${PUSHER_HOST}"',
                'VITE_PUSHER_PORT' => '"${PUSHER_PORT}"',
            ];
        } elseif ($broadcaster === 'reverb') {
            $env += [
                'REVERB_APP_ID' => '${RESONANCE_APP_ID}',
                'REVERB_APP_KEY' => '${RESONANCE_APP_KEY}',
                'REVERB_APP_SECRET' => '${RESONANCE_APP_SECRET}',
                'REVERB_HOST' => '${RESONANCE_HOST}',
                'REVERB_PORT' => '${RESONANCE_PORT}',
                'REVERB_SCHEME' => 'http',
                'VITE_REVERB_APP_KEY' => '"${REVERB_APP_KEY}"',
                'VITE_REVERB_HOST' => '"${REVERB_HOST}"',
                'VITE_REVERB_PORT' => '"${REVERB_PORT}"',
                'VITE_REVERB_SCHEME' => '"${REVERB_SCHEME}"',
            ];
        }

        return $env;
    }

    /** @return array<string, string> */
    private function readEnv(string $file): array
    {
        $values = [];
        if (! is_file($file)) {
            return $values;
        }
        foreach (file($file, FILE_IGNORE_NEW_LINES) as $line) {
            if (preg_match('/^\s*([A-Z0-9_]+)\s*=\s*(.*)$/', $line, $m)) {
                $values[$m[1]] = trim($m[2], " \"'");
            }
        }

        return $values;
    }

    /**
     * Sets each key in $file: replaces the line of a key that is there with another value,
     * appends the missing ones. Keys already holding the value are left alone.
     *
     * @return string[] the keys written
     */
    private function writeEnv(Filesystem $files, string $file, array $env): array
    {
        $text = $files->exists($file) ? $files->get($file) : '';
        $written = [];
        $append = [];
        foreach ($env as $key => $value) {
            $pattern = '/^'.preg_quote($key, '/').'=.*$/m';
            if (preg_match($pattern, $text, $m)) {
                if ($m[0] === "$key=$value" || in_array($key, ['RESONANCE_APP_ID', 'RESONANCE_APP_KEY', 'RESONANCE_APP_SECRET'], true)) {
                    continue;
                }
                $text = preg_replace($pattern, str_replace(['\\', '$'], ['\\\\', '\\$'], "$key=$value"), $text, 1);
            } else {
                $append[] = "$key=$value";
            }
            $written[] = $key;
        }
        if ($append) {
            $text = rtrim($text, "\n").($text === '' ? '' : "\n\n")."# Resonance\n".implode("\n", $append)."\n";
        }
        if ($written) {
            $files->put($file, $text);
        }

        return $written;
    }

    private function echoSnippet(string $broadcaster): string
    {
        if ($broadcaster === 'redis') {
            return <<<'JS'
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';

window.Echo = new Echo({
    broadcaster: 'socket.io',
    host: `${window.location.hostname}:6001`,   // RESONANCE_PORT
    client: io,
});

JS;
        }
        $prefix = $broadcaster === 'reverb' ? 'VITE_REVERB' : 'VITE_PUSHER';

        return <<<JS
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
window.Pusher = Pusher;

window.Echo = new Echo({
    broadcaster: '$broadcaster',
    key: import.meta.env.{$prefix}_APP_KEY,
    wsHost: import.meta.env.{$prefix}_HOST,
    wsPort: import.meta.env.{$prefix}_PORT,
    wssPort: import.meta.env.{$prefix}_PORT,
    forceTLS: false,
    enabledTransports: ['ws', 'wss'],
    cluster: 'mt1',
});

JS;
    }

    private function startCommand(string $broadcaster): string
    {
        $url = rtrim((string) config('app.url', 'http://127.0.0.1:8000'), '/');
        $lines = ['# the same RESONANCE_APP_ID / _KEY / _SECRET as this .env:', 'set -a; . ./.env; set +a'];
        if ($broadcaster === 'redis') {
            $redis = config('database.redis.default', []);
            $auth = ! empty($redis['password']) ? ':'.rawurlencode((string) $redis['password']).'@' : '';
            $lines[] = 'RESONANCE_REDIS_URL=redis://'.$auth.($redis['host'] ?? '127.0.0.1').':'.($redis['port'] ?? 6379).'/'.($redis['database'] ?? 0).' \\';
            $lines[] = 'RESONANCE_REDIS_PREFIX='.config('database.redis.options.prefix', '').' \\';
        }
        $lines[] = "RESONANCE_AUTH_ENDPOINT=$url/broadcasting/auth \\";
        $lines[] = 'resonance start';
        $lines[] = '# socket routes (routes/sockets.php): php artisan resonance:routes >> resonance.toml';

        return implode("\n", $lines)."\n";
    }
}
