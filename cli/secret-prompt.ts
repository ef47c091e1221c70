// Reads a secret typed at the terminal without echoing it (a password for `strata login`): the
// terminal goes raw for the read and back after, whatever happens. Not a TTY = no prompt: the
// caller says where else the secret may come from.
import { StrataError, invalid } from '../common/errors.js';

export async function promptSecret(question: string, fix: string): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) throw invalid(`no terminal to ask for the password: ${fix}`);
  input.setRawMode(true); // before the question: nothing typed after it is ever echoed
  process.stderr.write(question);
  input.resume();
  input.setEncoding('utf8');
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (text: string) => {
        for (const char of text) {
          if (char === '\r' || char === '\n' || char === '\u0004') {
            input.off('data', onData);
            return resolve(typed);
          }
          if (char === '\u0003') {
            input.off('data', onData);
            return reject(new StrataError('Invalid', 'login cancelled'));
          }
          if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
          else typed += char;
        }
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
    process.stderr.write('\n');
  }
}
