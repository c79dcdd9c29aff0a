import { STREAM_NAME, STREAM_SUBJECTS, consumerNameFor, subjectFor } from '../../../events/subjects';
import { EVENT_TYPES } from '../../../events/types';

describe('subjects', () => {
  test('maps each pipeline type to its own subject inside the stream', () => {
    expect(subjectFor('io.imaging.manifest-received')).toBe('imaging.manifest-received');
    expect(subjectFor(EVENT_TYPES.importRequested)).toBe('imaging.import.requested');
    const subjects = Object.values(EVENT_TYPES).map(subjectFor);
    expect(new Set(subjects).size).toBe(subjects.length);
    for (const subject of subjects) expect(subject.startsWith('imaging.')).toBe(true);
    expect(STREAM_NAME).toBe('IMAGING');
    expect(STREAM_SUBJECTS).toEqual(['imaging.>']);
  });

  test.each(['com.example.thing', 'io.imaging.', 'io.imaging.a b', 'io.imaging.*', 'io.imaging.>', 'io.imaging.a..b'])('refuses %j', (type) => {
    expect(() => subjectFor(type)).toThrow();
  });

  test('names a durable consumer per type only when a subscription has several types', () => {
    expect(consumerNameFor('convert', ['a'], 0)).toBe('convert');
    expect(consumerNameFor('watch', ['a', 'b'], 1)).toBe('watch-1');
  });
});
